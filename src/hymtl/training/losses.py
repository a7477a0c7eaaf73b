"""The training loss and when to stop: `loss.*` and `early_stopping.*` in conf/config.yaml."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def class_weights(targets: list[int], num_classes: int) -> torch.Tensor:
    """'balanced' weights, as scikit-learn defines them: n / (classes · count of the class),
    so each class contributes to the loss as if the classes were equally common."""
    counts = torch.bincount(torch.tensor(targets), minlength=num_classes).float()
    return len(targets) / (num_classes * counts)


class ClassWeightedCrossEntropy(nn.Module):
    """Cross-entropy (with label smoothing) whose each image counts w[its class] times, averaged
    over the batch's images: loss = (1/B)·Σ_i w[y_i]·CE_ε(x_i, y_i).

    Unlike nn.CrossEntropyLoss(weight=w), which divides by the batch's total weight Σ_i w[y_i]
    (a batch of 4 images of one class then weighs as much as any other batch, whatever w says)
    and weights each class's label-smoothing term by that class's w, this keeps the promise of
    'balanced' over an epoch: class c gets count_c·w_c = n/classes of the total weight, the same
    for every class, and the mean weight per image is 1, so the loss keeps its unweighted scale."""

    def __init__(self, weight: torch.Tensor, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_image = F.cross_entropy(
            logits, targets, reduction="none", label_smoothing=self.label_smoothing
        )
        return (self.weight[targets] * per_image).mean()


def build_criterion(loss_cfg, targets: list[int], num_classes: int) -> nn.Module:
    """The training loss: cross-entropy with the configured label smoothing and class weights
    (none, or balanced from the training split's class counts: ClassWeightedCrossEntropy)."""
    if str(loss_cfg.class_weights.value) == "balanced":
        weight = class_weights(targets, num_classes)
        return ClassWeightedCrossEntropy(weight, loss_cfg.label_smoothing)
    return nn.CrossEntropyLoss(label_smoothing=loss_cfg.label_smoothing)


def evaluation_criterion() -> nn.Module:
    """What val_loss (and the test loss) measure: plain cross-entropy, no class weights and no
    label smoothing, as timm's validate does, so val_loss is comparable across loss.* settings."""
    return nn.CrossEntropyLoss()


def is_better(value: float, best: float | None, metric: str) -> bool:
    """Whether `value` of `metric` beats `best` (val_acc: higher; val_loss: lower). A tie is no
    improvement: the earlier epoch is kept, for best.pt as for early stopping."""
    if best is None:
        return True
    return value > best if metric == "val_acc" else value < best


def epochs_without_improvement(rows: list[dict], metric: str, since: int = 0) -> int:
    """Epochs since `metric` (val_acc: higher is better; val_loss: lower) last improved, counted
    from epoch `since` at the earliest (an early-stopped run that is extended restarts the count
    at its extension). Derived from metrics.csv alone, so a resumed run stops exactly where an
    unbroken one would."""
    values = [row[metric] for row in rows]
    if not values:
        return 0
    best = max(values) if metric == "val_acc" else min(values)
    last_improvement = values.index(best) + 1  # epochs are rows 1..n
    start = min(max(last_improvement, since), len(values))
    return len(values) - start


def should_stop(rows: list[dict], early_stopping, since: int = 0) -> bool:
    patience = early_stopping.patience
    metric = str(early_stopping.metric.value)
    return patience is not None and epochs_without_improvement(rows, metric, since) >= patience

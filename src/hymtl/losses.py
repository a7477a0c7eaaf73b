"""The training loss and when to stop: `loss.*` and `early_stopping.*` in conf/config.yaml."""

from __future__ import annotations

import torch
from torch import nn


def class_weights(targets: list[int], num_classes: int) -> torch.Tensor:
    """'balanced' weights, as scikit-learn defines them: n / (classes · count of the class),
    so each class contributes to the loss as if the classes were equally common."""
    counts = torch.bincount(torch.tensor(targets), minlength=num_classes).float()
    return len(targets) / (num_classes * counts)


def build_criterion(loss_cfg, targets: list[int], num_classes: int) -> nn.CrossEntropyLoss:
    """Cross-entropy with the configured label smoothing and class weights (none or balanced,
    from the training split's class counts)."""
    weight = None
    if str(loss_cfg.class_weights.value) == "balanced":
        weight = class_weights(targets, num_classes)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=loss_cfg.label_smoothing)


def epochs_without_improvement(rows: list[dict], metric: str) -> int:
    """Epochs since `metric` (val_acc: higher is better; val_loss: lower) last improved.
    Derived from metrics.csv alone, so a resumed run stops exactly where an unbroken one would."""
    values = [row[metric] for row in rows]
    if not values:
        return 0
    best = max(values) if metric == "val_acc" else min(values)
    return len(values) - 1 - values.index(best)


def should_stop(rows: list[dict], early_stopping) -> bool:
    patience = early_stopping.patience
    metric = str(early_stopping.metric.value)
    return patience is not None and epochs_without_improvement(rows, metric) >= patience

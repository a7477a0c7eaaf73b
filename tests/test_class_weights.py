"""loss.class_weights=balanced gives each class the same share of an epoch's training signal,
at batch_size=4 too; val_loss is plain cross-entropy whatever loss.* says."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hymtl.train
from hymtl.train import train
from hymtl.training.losses import build_criterion, evaluation_criterion

from .conftest import TINY, compose_config


def class_shares(criterion, targets: list[int], batch_size: int = 4, seed: int = 0) -> list[float]:
    """Each class's share of an epoch's gradient: the summed |∂loss/∂logits| of its images over
    one shuffled epoch of batches, at logits where every image's own gradient is the same size
    (all zero: uniform predictions), so only the loss's weighting of the images differs."""
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
    labels = torch.tensor(targets)[order]
    per_class = torch.zeros(int(labels.max()) + 1)
    for batch in labels.split(batch_size):
        logits = torch.zeros(len(batch), len(per_class), requires_grad=True)
        criterion(logits, batch).backward()
        per_class.index_add_(0, batch, logits.grad.abs().sum(1))
    return (per_class / per_class.sum()).tolist()


def loss_config(*overrides):
    return compose_config(list(overrides)).loss


IMBALANCED = [0] * 30 + [1] * 10  # 3:1, as an ants/bees folder with few bees


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_balanced_gives_each_class_an_equal_share_at_batch_4(smoothing):
    balanced = build_criterion(
        loss_config("loss.class_weights=balanced", f"loss.label_smoothing={smoothing}"),
        IMBALANCED,
        2,
    )
    for seed in range(3):
        assert class_shares(balanced, IMBALANCED, seed=seed) == pytest.approx([0.5, 0.5])
    plain = build_criterion(loss_config(f"loss.label_smoothing={smoothing}"), IMBALANCED, 2)
    assert class_shares(plain, IMBALANCED) == pytest.approx([0.75, 0.25])


def test_torch_weighted_cross_entropy_breaks_that_promise():
    # What loss.class_weights=balanced used to be: nn.CrossEntropyLoss(weight=...) divides each
    # batch by its total weight, so a batch of 4 majority images counts as much as any other.
    weight = torch.tensor([40 / 60, 40 / 20])
    shares = class_shares(nn.CrossEntropyLoss(weight=weight), IMBALANCED)
    assert abs(shares[1] - 0.5) > 0.02


def test_balanced_loss_keeps_the_unweighted_scale_over_an_epoch():
    balanced = build_criterion(loss_config("loss.class_weights=balanced"), IMBALANCED, 2)
    logits = torch.zeros(len(IMBALANCED), 2)
    # mean weight per image is 1: at uniform predictions the loss is log 2, as unweighted
    assert balanced(logits, torch.tensor(IMBALANCED)).item() == pytest.approx(
        torch.log(torch.tensor(2.0)).item()
    )


def test_evaluation_criterion_is_plain_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [0.1, 0.3]])
    targets = torch.tensor([0, 1, 1])
    plain = F.cross_entropy(logits, targets)
    assert evaluation_criterion()(logits, targets).item() == pytest.approx(plain.item())


@pytest.mark.slow
def test_val_loss_is_plain_cross_entropy_whatever_the_training_loss(
    image_root, tmp_path, monkeypatch
):
    real_evaluate, criteria = hymtl.train.evaluate, []

    def recording(model, loader, **kwargs):
        criteria.append(kwargs["criterion"])
        return real_evaluate(model, loader, **kwargs)

    monkeypatch.setattr(hymtl.train, "evaluate", recording)
    overrides = [
        "data=imagefolder",
        f"data.root={image_root}",
        "epochs=1",
        "model.freeze_backbone=true",
        "loss.class_weights=balanced",
        "loss.label_smoothing=0.2",
    ]
    train(compose_config(TINY + overrides), tmp_path / "run")
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5], [0.1, 0.3]])
    targets = torch.tensor([0, 0, 1])
    assert criteria
    for criterion in criteria:
        value = criterion(logits, targets)  # no class weights, no smoothing
        assert value.item() == pytest.approx(F.cross_entropy(logits, targets).item())

"""loss.label_smoothing, loss.class_weights and early_stopping: each shown to act."""

import json
import math

import pytest
import torch

import hymtl.train
from hymtl.run.resume import NothingToResume
from hymtl.train import train
from hymtl.training.losses import build_criterion, class_weights, epochs_without_improvement

from .conftest import TINY, compose_config


def loss_config(*overrides):
    return compose_config(list(overrides)).loss


def test_balanced_weights_follow_the_class_counts():
    weights = class_weights([0] * 30 + [1] * 10, 2)
    assert weights.tolist() == pytest.approx([40 / 60, 40 / 20])


def test_label_smoothing_and_class_weights_change_the_loss_as_defined():
    logits = torch.tensor([[2.0, 0.0], [0.5, 1.5]])
    targets = torch.tensor([0, 1])
    log_p = logits.log_softmax(1)
    plain = build_criterion(loss_config(), [0, 1], 2)(logits, targets)
    assert plain.item() == pytest.approx(-(log_p[0, 0] + log_p[1, 1]).item() / 2)

    smoothed = build_criterion(loss_config("loss.label_smoothing=0.1"), [0, 1], 2)
    # target distribution (1 - 0.1)·one-hot + 0.1/2
    by_hand = -sum(0.95 * log_p[i, t] + 0.05 * log_p[i, 1 - t] for i, t in enumerate([0, 1])) / 2
    assert smoothed(logits, targets).item() == pytest.approx(by_hand.item())

    train_targets = [0] * 30 + [1] * 10  # weights 2/3 and 2
    weighted = build_criterion(loss_config("loss.class_weights=balanced"), train_targets, 2)
    # each image weighs w[its class], averaged over the batch's images (not over its weight)
    by_hand = -(2 / 3 * log_p[0, 0] + 2 * log_p[1, 1]) / 2
    assert weighted(logits, targets).item() == pytest.approx(by_hand.item())
    assert not math.isclose(weighted(logits, targets).item(), plain.item())


def test_epochs_without_improvement_per_metric():
    history = [(0.5, 1.0), (0.7, 0.8), (0.6, 0.9), (0.6, 0.7)]
    rows = [dict(val_acc=acc, val_loss=loss) for acc, loss in history]
    assert epochs_without_improvement(rows, "val_acc") == 2
    assert epochs_without_improvement(rows, "val_loss") == 0
    assert epochs_without_improvement([], "val_acc") == 0


@pytest.mark.slow
def test_early_stopping_stops_records_and_stays_stopped(image_root, tmp_path, monkeypatch):
    real_evaluate, accuracies = hymtl.train.evaluate, iter([0.5, 0.7, 0.6, 0.6, 0.9, 0.9])

    def scripted(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        return {**result, "acc": next(accuracies)}

    monkeypatch.setattr(hymtl.train, "evaluate", scripted)
    run_dir = tmp_path / "run"
    overrides = ["data=imagefolder", f"data.root={image_root}", "epochs=6"]
    summary = train(compose_config(TINY + overrides + ["early_stopping.patience=2"]), run_dir)
    assert summary["stopped_early_at"] == 4 and summary["best_epoch"] == 2
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2", "3", "4"]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    with pytest.raises(NothingToResume, match="stopped early after epoch 4"):
        train(compose_config([f"resume={run_dir}"]), None, [])

"""early_stopping.metric is the one selection metric: it chooses best.pt as it drives early
stopping; an extended early-stopped run restarts its patience count; summary.json says what was
selected by what, what augmentation ran and each sweep job's own command. Also the reference
report's claims: accuracy intervals within [0, 100], no verdict from a t-test over 2 seeds."""

import json
import logging

import pytest
import torch

import hymtl.run.provenance
import hymtl.train
from hymtl.report import compare_with_none, find_run_dirs, load_run, summarize_by_regularizer
from hymtl.run.artifacts import load_checkpoint
from hymtl.run.provenance import command_line, job_command_line
from hymtl.train import train
from hymtl.training.epoch import best_value
from hymtl.training.features import CACHED_AUGMENTATION
from hymtl.training.losses import epochs_without_improvement, is_better

from .conftest import TINY, compose_config
from .test_report import write_run

# The head alone on cached features: an epoch costs milliseconds.
FAST = TINY + ["model.freeze_backbone=true", "feature_cache=true"]


def scripted_evaluate(monkeypatch, history, seen_criteria=None):
    """Val evaluations that report the (acc, loss) of `history`, one pair per epoch."""
    real_evaluate, pairs = hymtl.train.evaluate, iter(history)

    def scripted(model, loader, **kwargs):
        if seen_criteria is not None:
            seen_criteria.append(kwargs["criterion"])
        result = real_evaluate(model, loader, **kwargs)
        desc = kwargs.get("desc", "")
        if desc.endswith("val"):
            acc, loss = next(pairs)
            result = {**result, "acc": acc, "loss": loss}
        return result

    monkeypatch.setattr(hymtl.train, "evaluate", scripted)


def config(image_root, *overrides):
    return compose_config(FAST + ["data=imagefolder", f"data.root={image_root}", *overrides])


def test_is_better_keeps_the_earlier_epoch_on_ties():
    assert is_better(0.7, None, "val_acc") and is_better(0.7, 0.6, "val_acc")
    assert not is_better(0.6, 0.6, "val_acc") and not is_better(0.5, 0.6, "val_acc")
    assert is_better(0.4, 0.5, "val_loss") and not is_better(0.5, 0.5, "val_loss")
    assert not is_better(0.6, 0.5, "val_loss")


def test_patience_count_restarts_at_an_extension():
    rows = [{"val_acc": acc} for acc in (0.5, 0.7, 0.6, 0.6, 0.6)]
    assert epochs_without_improvement(rows, "val_acc") == 3
    assert epochs_without_improvement(rows, "val_acc", since=4) == 1  # extended after epoch 4
    assert epochs_without_improvement(rows, "val_acc", since=1) == 3  # improved after it


def test_best_value_of_a_checkpoint_from_an_older_hymtl():
    old = {"best_val_acc": 0.9, "best_eval": {"loss": 0.4}, "config": {}}
    assert best_value(old) == 0.9
    old["config"] = {"early_stopping": {"metric": "val_loss"}}
    assert best_value(old) == 0.4  # best.pt's epoch, whatever chose it
    assert best_value({**old, "best_eval": None}) is None  # epoch 0: nothing selected yet
    assert best_value({**old, "best_value": 0.3}) == 0.3


@pytest.mark.slow
def test_val_loss_chooses_best_pt(image_root, tmp_path, monkeypatch):
    # highest val acc: epoch 2; lowest val loss: epoch 3
    scripted_evaluate(monkeypatch, [(0.5, 1.0), (0.9, 0.8), (0.6, 0.5), (0.7, 0.6)])
    run_dir = tmp_path / "run"
    summary = train(config(image_root, "epochs=4", "early_stopping.metric=val_loss"), run_dir)
    assert summary["selection_metric"] == "val_loss"
    assert summary["best_epoch"] == 3
    assert summary["best_val_acc"] == 0.6  # the accuracy of the selected epoch
    assert summary["best_val_loss"] == 0.5
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 3
    assert load_checkpoint(run_dir / "last.pt")["best_value"] == 0.5


@pytest.mark.slow
def test_val_acc_still_chooses_by_accuracy(image_root, tmp_path, monkeypatch):
    scripted_evaluate(monkeypatch, [(0.5, 1.0), (0.9, 0.8), (0.6, 0.5), (0.9, 0.4)])
    summary = train(config(image_root, "epochs=4"), tmp_path / "run")
    assert summary["selection_metric"] == "val_acc"
    assert summary["best_epoch"] == 2  # epoch 4 ties at 0.9: the earlier epoch is kept


@pytest.mark.slow
def test_resume_keeps_the_selected_value(image_root, tmp_path, monkeypatch):
    # epoch 3 has a higher accuracy but a worse loss than epoch 2: val_loss keeps epoch 2,
    # which only holds after resume if last.pt carried the selected loss
    history = [(0.5, 1.0), (0.6, 0.8), (0.9, 0.9), (0.7, 0.85)]
    scripted_evaluate(monkeypatch, history)
    run_dir = tmp_path / "run"
    train(config(image_root, "epochs=2", "early_stopping.metric=val_loss"), run_dir)
    summary = train(compose_config([f"resume={run_dir}", "epochs=4"]), None, ["epochs=4"])
    assert summary["best_epoch"] == 2 and summary["best_val_loss"] == 0.8
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 2


@pytest.mark.slow
def test_extending_an_early_stopped_run_restarts_the_patience(image_root, tmp_path, monkeypatch):
    accuracies = [0.5, 0.7, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    scripted_evaluate(monkeypatch, [(acc, 1.0) for acc in accuracies])
    run_dir = tmp_path / "run"
    overrides = ["epochs=6", "early_stopping.patience=2"]
    assert train(config(image_root, *overrides), run_dir)["stopped_early_at"] == 4
    summary = train(compose_config([f"resume={run_dir}", "epochs=8"]), None, ["epochs=8"])
    # before: one epoch more (5), since the 2 epochs without improvement were already there
    assert summary["stopped_early_at"] == 6 and summary["best_epoch"] == 2
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2", "3", "4", "5", "6"]


@pytest.mark.slow
def test_cached_features_record_and_warn_that_augmentation_is_off(
    image_root, tmp_path, caplog, monkeypatch
):
    caplog.set_level(logging.WARNING, logger="hymtl")
    summary = train(config(image_root, "epochs=2", "augment=reference"), tmp_path / "run")
    assert summary["augmentation_applied"] == CACHED_AUGMENTATION
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["augmentation_applied"] == CACHED_AUGMENTATION
    warnings = [r for r in caplog.records if "augment=reference is not applied" in r.message]
    assert len(warnings) == 1  # once per run, not once per epoch


def test_augmentation_applied_without_the_cache():
    from hymtl.training.features import applied_augmentation

    assert applied_augmentation("trivialaugment", False) == "trivialaugment"
    assert applied_augmentation("trivialaugment", True) == CACHED_AUGMENTATION


def test_a_sweep_job_records_its_own_command(monkeypatch):
    from hydra.types import RunMode

    class Overrides:
        task = ["regularizer=l2", "seed=1", "data.root=/my data"]

    class Hydra:
        mode = RunMode.MULTIRUN
        overrides = Overrides()

    class FakeHydraConfig:
        initialized = staticmethod(lambda: True)
        get = staticmethod(lambda: Hydra())

    monkeypatch.setattr(hymtl.run.provenance, "HydraConfig", FakeHydraConfig)
    assert job_command_line() == (
        "python -m hymtl.train regularizer=l2 seed=1 'data.root=/my data'"
    )
    Hydra.mode = RunMode.RUN
    assert job_command_line() is None  # a single run: `command` is its own


def test_report_accuracy_interval_is_clipped_to_100(tmp_path):
    for seed, accuracy in enumerate([1.0, 1.0, 0.9]):
        write_run(tmp_path / f"{seed}_none", "none", seed, accuracy)
    [row] = summarize_by_regularizer([load_run(d) for d in find_run_dirs(tmp_path)])
    low, high = row["accuracy_ci"]
    assert high == 1.0 and 0.0 <= low < 0.967  # unclipped: [0.823, 1.110]


def test_report_makes_no_verdict_from_two_seeds(tmp_path):
    for seed, (acc_none, acc_l2) in enumerate([(0.90, 0.80), (0.92, 0.81)]):
        write_run(tmp_path / f"{seed}_none", "none", seed, acc_none)
        write_run(tmp_path / f"{seed}_l2", "l2", seed, acc_l2)
    [comparison] = compare_with_none(
        summarize_by_regularizer([load_run(d) for d in find_run_dirs(tmp_path)])
    )
    # before: "paired t-test over 2 seeds", p = 0.03, "significant (p<0.05)"
    assert comparison["test"] == "no test possible (2 seeds)"
    assert comparison["p"] is None and comparison["p_text"] == "–"
    assert comparison["verdict"] == "not tested"
    assert comparison["diff"] == pytest.approx(-0.105)
    assert torch.tensor(comparison["ci"]).isfinite().all()  # the interval is still shown


def test_a_torchrun_run_records_the_torchrun_command(monkeypatch):
    class FakeHydraConfig:
        initialized = staticmethod(lambda: True)

    monkeypatch.setattr(hymtl.run.provenance, "HydraConfig", FakeHydraConfig)
    monkeypatch.setattr("sys.argv", ["train.py", "device=cpu", "epochs=2"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert command_line() == "torchrun --nproc_per_node=2 -m hymtl.train device=cpu epochs=2"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert command_line() == "python -m hymtl.train device=cpu epochs=2"

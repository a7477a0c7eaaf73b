"""What the epoch loop carries and decides: its progress (what last.pt saves), the one
selection metric, early stopping across resumes, and the checkpoint of an epoch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from hymtl.config.compose import to_plain_dict
from hymtl.training.losses import should_stop
from hymtl.training.runtime import capture_rng
from hymtl.training.setup import Parts

log = logging.getLogger("hymtl.train")


@dataclass
class Progress:
    """What the loop carries from epoch to epoch, and what last.pt saves of it."""

    start_epoch: int = 1
    epoch: int = 0  # the epoch in flight
    stopped_early_at: int | None = None
    # the selected epoch (best.pt): its accuracy, its evaluation and `value`, the value of the
    # selection metric (early_stopping.metric) it was chosen by
    best: dict = field(
        default_factory=lambda: {"val_acc": -1.0, "epoch": 0, "eval": None, "value": None}
    )
    # early stopping counts epochs without improvement from this epoch at the earliest: the
    # epoch an early-stopped run was extended after (0: from the start)
    patience_since: int = 0
    checkpoint_epochs: int | None = None  # a resumed run: `epochs` of the config last.pt holds
    last_eval: dict | None = None  # the latest epoch's evaluation
    tracking: dict = field(default_factory=dict)  # tracker run ids, so resume= continues them
    # resume_allow_data_change=true: each time a resume went on with other images, and how
    data_changes: list = field(default_factory=list)


def best_value(resumed: dict) -> float | None:
    """The selection metric's value at the selected epoch, as last.pt saved it; from a
    checkpoint of an older hymtl (which chose best.pt by accuracy whatever the metric), the
    value of the epoch that best.pt holds."""
    if "best_value" in resumed:
        return resumed["best_value"]
    if resumed["best_eval"] is None:
        return None
    metric = ((resumed["config"].get("early_stopping") or {}).get("metric")) or "val_acc"
    return resumed["best_val_acc"] if metric == "val_acc" else resumed["best_eval"]["loss"]


def make_checkpoint(cfg, parts: Parts, progress: Progress, epoch: int) -> dict:
    """last.pt/best.pt: every state a resume needs to continue exactly, and the config."""
    return {
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "regularizer": parts.regularizer.state_dict(),  # l2sp: the starting weights w0
        "epoch": epoch,
        "best_val_acc": progress.best["val_acc"],
        "best_epoch": progress.best["epoch"],
        "best_eval": progress.best["eval"],
        "best_value": progress.best["value"],  # of the selection metric (early_stopping.metric)
        "patience_since": progress.patience_since,
        "last_eval": progress.last_eval,
        "config": to_plain_dict(cfg),
        "class_names": parts.splits.classes,
        "rng": capture_rng(parts.train_loader.generator),
        "tracking": progress.tracking,
        "data_identity": parts.splits.identity,  # what was under data.root, for resume to check
        "data_changes": progress.data_changes,
    }


# What best.pt keeps under checkpoints=lean: what predict, evaluate, export and report read.
# The optimizer, scheduler and random states a resume needs are in last.pt alone.
LEAN_KEYS = ("model", "epoch", "best_val_acc", "best_epoch", "best_eval", "best_value", "config")
LEAN_KEYS += ("class_names", "data_identity")


def best_checkpoint(cfg, checkpoint: dict) -> dict:
    """best.pt's content: everything (checkpoints=full) or the weights and what describes them
    (checkpoints=lean, about half the size for SGD with momentum)."""
    if cfg.checkpoints.value == "full":
        return checkpoint
    return {key: checkpoint[key] for key in LEAN_KEYS}


def non_finite_tensor(model: nn.Module) -> str | None:
    """The name of a weight or buffer holding NaN/inf, if any: such a model is never saved."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


def selection_metric(cfg) -> str:
    """The one metric that chooses best.pt and drives early stopping: val_acc (higher is
    better) or val_loss (lower is better)."""
    return str(cfg.early_stopping.metric.value)


def continue_after_early_stop(cfg, progress: Progress, rows: list[dict]) -> bool:
    """Whether a resumed run trains on though its metrics.csv already says stop. A run that
    stopped early and is extended (epochs= larger than the run's) restarts the patience count
    after its last epoch: it trains early_stopping.patience more epochs without improvement, not
    one. Not extended (it stopped, then died before its summary): no epoch is trained again."""
    done = progress.start_epoch - 1
    if not rows or not should_stop(rows, cfg.early_stopping, progress.patience_since):
        return True
    if progress.checkpoint_epochs is not None and cfg.epochs > progress.checkpoint_epochs:
        progress.patience_since = done
        log.info(
            "the run stopped early after epoch %d; extended to %d epochs, it trains until %s "
            "has not improved for %d epochs counted from epoch %d",
            done,
            cfg.epochs,
            selection_metric(cfg),
            cfg.early_stopping.patience,
            done,
        )
        return True
    progress.stopped_early_at = done
    log.info("the run stopped early after epoch %d: no epoch to train", done)
    return False


def epoch_row(epoch: int, trained: dict, val: dict, lr: float, seconds: float) -> dict:
    """The epoch's row of metrics.csv."""
    seen = trained["seen"]
    return {
        "epoch": epoch,
        "train_loss": trained["loss_sum"] / seen,
        "train_penalty": trained["penalty_sum"] / seen,
        "train_acc": trained["correct"] / seen,
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "lr": lr,
        "seconds": seconds,
    }


def log_epoch(row: dict, epochs: int) -> None:
    columns = ("train_loss", "train_penalty", "train_acc", "val_loss", "val_acc", "lr", "seconds")
    log.info(
        "%s  train loss %.4f penalty %.4f acc %.4f | val loss %.4f acc %.4f | lr %.2g | %.1fs",
        f"epoch {row['epoch']}/{epochs}",
        *(row[column] for column in columns),
    )

"""The one training loop: `python -m hymtl.train [overrides]` or `train(cfg, run_dir)` from code.

Reads like torchvision's references/classification: train_one_epoch, evaluate, then artifacts.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from hymtl import UserError, display_path
from hymtl.config.compose import multirun_problem, override_problem, to_plain_dict
from hymtl.config.schema import register_configs
from hymtl.data import DataSplits, make_loader
from hymtl.data.identity import brief, check_same_data, kept_run_problem, splits_identity
from hymtl.data.splits import evaluation_block, split_rows
from hymtl.errors import one_line  # a failure's reason: every line of it
from hymtl.run.artifacts import (
    MetricsLog,
    build_summary,
    classification_metrics,
    load_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
    write_json,
    write_plots,
    write_split_csv,
    write_val_predictions,
)
from hymtl.run.callbacks import RunStartGuard, SweepOutcome
from hymtl.run.checks import check_config
from hymtl.run.resolvers import register_resolvers
from hymtl.run.resume import (
    NothingToResume,
    capture_rng,
    load_resume_checkpoint,
    restore_rng,
    resumed_config,
    truncate_metrics,
)
from hymtl.run.rundir import (
    ARTIFACT_FILES,
    FINAL_ARTIFACTS,
    SPLIT_FILE,
    RunLock,
    claim_for_new_run,
    config_differences,
    data_root_overlap,
    move_aside,
    present_files,
    read_last_checkpoint,
    read_summary,
    refusal,
    run_state,
    same_config,
)
from hymtl.tracking import Trackers, open_trackers
from hymtl.training import distributed
from hymtl.training.calibration import calibration_metrics
from hymtl.training.features import (
    applied_augmentation,
    cached_feature_loaders,
    warn_augmentation_dropped,
)
from hymtl.training.loop import NonFiniteLoss, evaluate, train_one_epoch
from hymtl.training.losses import build_criterion, evaluation_criterion, is_better, should_stop
from hymtl.training.regularizers import Regularizer, weight_statistics
from hymtl.training.runtime import (
    autocast_for,
    resolve_device,
    resolve_num_workers,
    resolve_precision,
    resolve_threads,
    reuse_freed_memory,
    seed_everything,
)

log = logging.getLogger("hymtl.train")

# What @hydra.main needs before it composes: hymtl's resolvers and typed schema. Done when this
# module is imported, because launchers (joblib, submitit) import it in their worker processes.
register_resolvers()
register_configs()


def build(node, *args, **kwargs):
    """hydra.utils.instantiate, re-raising our own UserError instead of Hydra's wrapper."""
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise


def hydra_run_dir() -> Path:
    if not HydraConfig.initialized():
        raise ValueError("train(cfg) outside the Hydra CLI needs run_dir=")
    return Path(HydraConfig.get().runtime.output_dir)


def hydra_overrides() -> list[str]:
    """What the user typed (Hydra's task overrides); none when train() is called from code."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


class RunInterrupted(Exception):
    pass


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


@dataclass
class Runtime:
    """Where and how this process computes: setup_runtime's choices."""

    ranks: distributed.Ranks
    device: torch.device
    precision: str
    autocast: Callable
    num_workers: int


@dataclass
class Parts:
    """Everything the epoch loop works with, built from the config by build_parts."""

    splits: DataSplits
    model: nn.Module
    regularizer: Regularizer
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    step_model: nn.Module  # what a training step calls: the model, its DDP or compiled wrapper
    eval_model: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    channels_last: bool


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


def setup_runtime(cfg: DictConfig) -> Runtime:
    """Device, processes, precision, threads and determinism for this run."""
    ranks, device = distributed.start(resolve_device(cfg.device))
    if ranks.enabled and cfg.model.freeze_backbone and cfg.feature_cache:
        raise UserError(
            "model.freeze_backbone=true trains only the head, on cached features: run it in one "
            "process (python -m hymtl.train), or add feature_cache=false under torchrun"
        )
    precision = resolve_precision(cfg.precision.value, device)
    threads = resolve_threads(cfg.threads)
    if threads:
        torch.set_num_threads(threads)
    if cfg.reuse_freed_memory and device.type == "cpu":
        reuse_freed_memory()
    # Process-wide switches: set both ways, since sweep jobs can share one process.
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(cfg.deterministic)
    torch.backends.cudnn.benchmark = False
    seed_everything(cfg.seed)  # every rank: the same initial weights
    return Runtime(
        ranks,
        device,
        precision,
        autocast_for(device, precision),
        resolve_num_workers(cfg.num_workers, device),
    )


def build_parts(cfg: DictConfig, runtime: Runtime) -> Parts:
    """Data, model, regularizer, optimizer, scheduler and loaders, as the config says."""
    ranks, device = runtime.ranks, runtime.device
    augment = cfg.augment.name.value
    evaluation = to_plain_dict(cfg.evaluation)
    splits = build(cfg.data, seed=cfg.seed, augment=augment, evaluation=evaluation, _convert_="all")
    splits.identity = splits_identity(splits)
    if cfg.batch_size > len(splits.train):
        raise UserError(
            f"batch_size={cfg.batch_size} is larger than the {len(splits.train)} training images; "
            "lower batch_size="
        )
    log.info(
        "data %s: %s, classes %s (%s)",
        splits.root,
        split_sizes(splits, evaluation),
        splits.classes,
        splits.layout,
    )
    if ranks.enabled:
        log.info(
            "%d processes x batch %d = global batch %d",
            ranks.world_size,
            cfg.batch_size,
            ranks.world_size * cfg.batch_size,
        )
    model = build(cfg.model, num_classes=len(splits.classes)).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ranks.enabled:
        seed_everything(cfg.seed + ranks.rank)  # ... but each rank its own augmentations
    regularizer = build(cfg.regularizer)
    regularizer.attach(model)
    if regularizer.starts_from_weights and not (cfg.model.pretrained or cfg.model.weights_path):
        log.info(
            "regularizer=%s: w0 is the random initialization (model.pretrained=false)",
            regularizer.name,
        )
    optimizer = build(cfg.optimizer, _convert_="all")(regularizer.param_groups(model))
    scheduler = build(cfg.scheduler)(optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=runtime.precision == "fp16")
    cached_features = cfg.model.freeze_backbone and cfg.feature_cache
    if cached_features:
        # Only the head trains: it runs on backbone features computed once (training/features.py).
        warn_augmentation_dropped(augment)
        step_model, train_loader, val_loader = cached_feature_loaders(
            model,
            splits,
            cfg.batch_size,
            runtime.num_workers,
            cfg.seed,
            device,
            runtime.autocast,
        )
    else:
        train_loader, val_loader = image_loaders(cfg, splits, runtime)
        step_model = model
        if ranks.enabled:
            step_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        step_model = torch.compile(step_model) if cfg.compile else step_model
    # Under torchrun the loop evaluates the plain module on its val shard: DDP's forward would
    # add collectives, and the shards can differ in their number of batches.
    eval_model = model if ranks.enabled else step_model
    return Parts(
        splits=splits,
        model=model,
        regularizer=regularizer,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        criterion=build_criterion(cfg.loss, splits.train.targets, len(splits.classes)).to(device),
        step_model=step_model,
        eval_model=eval_model,
        train_loader=train_loader,
        val_loader=val_loader,
        channels_last=cfg.channels_last and not cached_features,
    )


def split_sizes(splits: DataSplits, evaluation: dict) -> str:
    """How many images play each role, for the log: the numbers say which images chose what."""
    if splits.test is None:
        return f"{len(splits.train)} train / {len(splits.val)} val images (val chooses the epoch)"
    protocol = evaluation["protocol"]
    if protocol == "kfold":
        protocol += f" fold {evaluation['fold']} of {evaluation['folds']}"
    return (
        f"{len(splits.train)} train / {len(splits.val)} select (chooses the epoch) / "
        f"{len(splits.test)} test images (evaluation={protocol}, "
        f"split_seed={evaluation['split_seed']}; test used once, after training)"
    )


def image_loaders(cfg: DictConfig, splits: DataSplits, runtime: Runtime):
    ranks = runtime.ranks
    pin = runtime.device.type == "cuda"
    train_sampler = None
    if ranks.enabled:
        train_sampler = DistributedSampler(
            splits.train, ranks.world_size, ranks.rank, shuffle=True, seed=cfg.seed
        )
    per_process = len(train_sampler) if train_sampler is not None else len(splits.train)
    # A last batch of one image cannot be normalized by BatchNorm in training mode (a model
    # whose feature maps end at 1x1 crashes on it): drop that one image for the epoch.
    drop_single = per_process % cfg.batch_size == 1 and cfg.batch_size > 1
    if drop_single:
        log.info(
            "%d training images at batch_size=%d leave a last batch of 1 image: it is skipped "
            "each epoch (BatchNorm needs 2)",
            per_process,
            cfg.batch_size,
        )
    train_loader = make_loader(
        splits.train,
        cfg.batch_size,
        runtime.num_workers,
        True,
        cfg.seed,
        pin,
        train_sampler,
        drop_last=drop_single,
    )
    val_shard = distributed.val_shard(splits.val, ranks)
    val_loader = make_loader(val_shard, cfg.batch_size, runtime.num_workers, False, cfg.seed, pin)
    return train_loader, val_loader


def restore(parts: Parts, resumed: dict, run_dir: Path, runtime: Runtime) -> Progress:
    """Put the model, optimizer, scheduler and every random stream back as last.pt left them."""
    parts.model.load_state_dict(resumed["model"])
    parts.optimizer.load_state_dict(resumed["optimizer"])
    parts.scheduler.load_state_dict(resumed["scheduler"])
    parts.scaler.load_state_dict(resumed["scaler"])
    parts.regularizer.load_state_dict(resumed.get("regularizer") or {})  # l2sp's w0
    best = {
        "val_acc": resumed["best_val_acc"],
        "epoch": resumed["best_epoch"],
        "eval": resumed["best_eval"],
        "value": best_value(resumed),
    }
    if runtime.ranks.is_main:
        truncate_metrics(run_dir / "metrics.csv", resumed["epoch"])
    restore_rng(resumed["rng"], parts.train_loader.generator)
    log.info("resuming %s after epoch %d", display_path(run_dir), resumed["epoch"])
    return Progress(
        start_epoch=resumed["epoch"] + 1,
        best=best,
        last_eval=resumed["last_eval"],
        data_changes=list(resumed.get("data_changes") or []),
        patience_since=resumed.get("patience_since") or 0,
        checkpoint_epochs=resumed["config"].get("epochs"),
    )


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


def check_resumed_data(cfg, parts: Parts, resumed: dict, run_dir: Path) -> str | None:
    """Refuse (UserError) to resume on other classes, or on other images unless
    resume_allow_data_change=true; returns the change that was allowed. Runs before restore()
    touches metrics.csv, so a refused resume leaves the run as it was."""
    change = check_same_data(
        resumed.get("data_identity"),
        parts.splits.identity,
        f"resume={display_path(run_dir)}",
        cfg.resume_allow_data_change,
        cfg.evaluation.protocol.value,
    )
    if change:
        log.warning(
            "resuming on changed images (resume_allow_data_change=true): %s; recorded in "
            "summary.json data_changes",
            change,
        )
    return change


def make_checkpoint(cfg, parts: Parts, progress: Progress, epoch: int) -> dict:
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


def non_finite_tensor(model: nn.Module) -> str | None:
    """The name of a weight or buffer holding NaN/inf, if any: such a model is never saved."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


def fit(
    cfg, parts: Parts, progress: Progress, run_dir: Path, runtime: Runtime, metrics, trackers
) -> None:
    """The epoch loop: train, evaluate, step the scheduler, log a row, checkpoint. best.pt is
    the epoch early_stopping.metric chose (the one selection metric, for early stopping too)."""
    ranks, device = runtime.ranks, runtime.device
    save = ranks.is_main  # the run dir is rank 0's
    metric = selection_metric(cfg)
    val_criterion = evaluation_criterion()  # val_loss: plain cross-entropy, whatever loss.* says
    if not continue_after_early_stop(cfg, progress, metrics.rows):
        return
    for epoch in tqdm(
        range(progress.start_epoch, cfg.epochs + 1),
        desc="epochs",
        disable=None if ranks.is_main else True,
    ):
        progress.epoch, epoch_start = epoch, time.time()
        lr = parts.optimizer.param_groups[0]["lr"]
        tag = f"epoch {epoch}/{cfg.epochs}"
        if hasattr(parts.train_loader.sampler, "set_epoch"):  # DistributedSampler, DecodeAhead
            parts.train_loader.sampler.set_epoch(epoch)  # a new shuffle each epoch
        try:
            train_stats = train_one_epoch(
                parts.step_model,
                parts.train_loader,
                parts.criterion,
                parts.regularizer,
                parts.optimizer,
                parts.scaler,
                device,
                runtime.autocast,
                parts.channels_last,
                f"{tag} train",
                ranks.is_main,
            )
            bad_tensor = non_finite_tensor(parts.model)
            if bad_tensor:
                raise NonFiniteLoss(f"weights became non-finite ({bad_tensor})")
        except ValueError as error:
            if "Expected more than 1 value per channel" not in str(error):
                raise
            raise UserError(
                f"BatchNorm cannot train on one value per channel (batch_size={cfg.batch_size}, "
                f"data.image_size={cfg.data.image_size}): use batch_size>=2 or larger images"
            ) from None
        except NonFiniteLoss as error:
            raise NonFiniteLoss(
                f"{error} in epoch {epoch}; last good checkpoint kept: "
                f"{display_path(run_dir)}/last.pt (epoch {epoch - 1}); lower optimizer.lr= or the "
                "penalty's λ"
            ) from None
        loss_sum, penalty_sum, correct, seen = distributed.sum_across_ranks(
            [train_stats[k] for k in ("loss_sum", "penalty_sum", "correct", "seen")],
            ranks,
            device,
        )
        distributed.sync_buffers(parts.model, ranks)  # BatchNorm statistics: rank 0's
        val = evaluate(
            parts.eval_model,
            parts.val_loader,
            val_criterion,
            device,
            runtime.autocast,
            parts.channels_last,
            f"{tag} val",
            ranks.is_main,
        )
        progress.last_eval = val = distributed.gather_evaluation(val, ranks)
        parts.scheduler.step()
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "train_penalty": penalty_sum / seen,
            "train_acc": correct / seen,
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "lr": lr,
            "seconds": time.time() - epoch_start,
        }
        metrics.append(row)
        trackers.log_epoch(row)
        value = row[metric]  # a tie keeps the earlier epoch, as early stopping counts it
        if is_better(value, progress.best["value"], metric):
            progress.best = {"val_acc": val["acc"], "epoch": epoch, "eval": val, "value": value}
            if save:
                save_checkpoint(run_dir / "best.pt", make_checkpoint(cfg, parts, progress, epoch))
        if save:
            save_checkpoint(run_dir / "last.pt", make_checkpoint(cfg, parts, progress, epoch))
        log.info(
            "%s  train loss %.4f penalty %.4f acc %.4f | val loss %.4f acc %.4f | lr %.2g | %.1fs",
            tag,
            row["train_loss"],
            row["train_penalty"],
            row["train_acc"],
            row["val_loss"],
            row["val_acc"],
            lr,
            row["seconds"],
        )
        if should_stop(metrics.rows, cfg.early_stopping, progress.patience_since):
            progress.stopped_early_at = epoch
            log.info(
                "early stopping after epoch %d: %s has not improved for %d epochs",
                epoch,
                metric,
                cfg.early_stopping.patience,
            )
            break


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


def finish(cfg, parts: Parts, progress: Progress, run_dir: Path, runtime, rows, extra) -> dict:
    """Predictions, plots, then summary.json last: `completed` means every artifact exists."""
    summary = build_summary(
        cfg,
        to_plain_dict(cfg),
        run_dir,
        parts.splits,
        runtime.device,
        runtime.precision,
        progress.best,
        progress.last_eval,
    )
    summary.update(extra)
    summary["selection_metric"] = selection_metric(cfg)  # chose best.pt; drove early stopping
    summary["best_val_loss"] = progress.best["eval"]["loss"]  # plain cross-entropy
    cached = bool(cfg.model.freeze_backbone and cfg.feature_cache)
    summary["augmentation_applied"] = applied_augmentation(cfg.augment.name.value, cached)
    summary["final_weights"] = weight_statistics(parts.model)
    summary["threads"] = torch.get_num_threads()
    summary["seconds_per_epoch"] = sum(r["seconds"] for r in rows) / len(rows)
    splits, classes = parts.splits, parts.splits.classes
    write_val_predictions(
        run_dir / "val_predictions.csv", splits.val.samples, classes, progress.best["eval"]
    )
    if splits.test is None:
        reported = ("val", splits.val, progress.best["eval"])
        summary["selection"] = (
            "best_val_acc and best_model: the epoch was chosen on val/ and is measured on val/, "
            "so they are selection-biased; evaluation=holdout or kfold holds out a test set"
        )
    else:
        test_eval = evaluate_selected_on_test(cfg, parts, run_dir, runtime)
        reported = ("test", splits.test, test_eval)
        summary["evaluation"] = evaluation_block(to_plain_dict(cfg.evaluation), splits)
        summary["test"] = classification_metrics(test_eval["targets"], test_eval["preds"], classes)
        summary["test"]["epoch"] = progress.best["epoch"]  # chosen on the select images
        write_val_predictions(
            run_dir / "test_predictions.csv", splits.test.samples, classes, test_eval
        )
    summary["calibration"] = calibration_of(reported)
    run_name = f"{cfg.model.name} · regularizer={cfg.regularizer.name} · seed={cfg.seed}"
    write_plots(summary, rows, reported, cfg, run_dir, run_name)
    write_json(run_dir / "summary.json", summary)
    return summary


def evaluate_selected_on_test(cfg, parts: Parts, run_dir: Path, runtime: Runtime) -> dict:
    """The selected weights (best.pt, chosen on the select images) on the test images: the one
    time the test images are used. The model is the plain module (rank 0, full test set)."""
    parts.model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
    pin = runtime.device.type == "cuda"
    loader = make_loader(parts.splits.test, cfg.batch_size, runtime.num_workers, False, 0, pin)
    return evaluate(
        parts.model,
        loader,
        evaluation_criterion(),
        runtime.device,
        runtime.autocast,
        cfg.channels_last,
        "test",
        True,
    )


def calibration_of(reported: tuple) -> dict | None:
    """Calibration of the selected weights on the reported images (test, else val); None for
    an evaluation saved without per-class probabilities (a run resumed from an older hymtl)."""
    name, _, result = reported
    if not result.get("probabilities"):
        return None
    return {"set": name, **calibration_metrics(result["probabilities"], result["targets"])}


def open_run(cfg: DictConfig, run_dir, overrides) -> tuple[DictConfig, Path, dict | None]:
    """The run's config, directory and (for resume=) last.pt, checked before anything is
    written: a resumed run's own config with only what may change, and a new run's directory
    free of any other run (cfg.overwrite=true moves that run's files aside)."""
    resumed = None
    if cfg.resume:
        resumed = load_resume_checkpoint(cfg.resume)
        typed = hydra_overrides() if overrides is None else overrides
        cfg = resumed_config(resumed, cfg.resume, typed, cfg)
        run_dir = Path(cfg.resume).expanduser()
    check_config(cfg)
    run_dir = Path(run_dir) if run_dir is not None else hydra_run_dir()
    overlap = data_root_overlap(run_dir, cfg.data.root)
    if overlap:
        raise UserError(overlap)
    if distributed.launched_ranks().is_main and not resumed:
        # Hydra has already written .hydra/ and train.log of this very run: only hymtl's
        # artifacts say that another run was here.
        claim_for_new_run(run_dir, cfg.overwrite, ARTIFACT_FILES)
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg, run_dir, resumed


class RunOutcome:
    """Holds the run dir while a run writes it, and makes every way out say how it ended:
    Ctrl-C/SIGTERM/SIGHUP -> summary.json `interrupted` and RunInterrupted with the way on; any
    error -> `failed` with its one-line reason. A resumed run's summary.json keeps describing
    it until training starts changing the run. Under torchrun only rank 0 writes."""

    def __init__(self, run_dir: Path, resumed: dict | None) -> None:
        self.run_dir = run_dir
        self.owner = distributed.launched_ranks().is_main
        self.writes_summary = self.owner and not resumed
        self.stage = "start-up"
        self.progress = Progress()
        self.trackers = Trackers([])  # told how the run ended, as summary.json is

    def __enter__(self) -> RunOutcome:
        self.lock = RunLock(self.run_dir) if self.owner else None
        if self.lock:  # what a write killed midway left: no other process can be writing now
            removed = remove_stale_temp_files(self.run_dir, ARTIFACT_FILES)
            if removed:
                log.info("removed %s, left by a write that was killed", ", ".join(removed))
        self.previous_handlers = catch_stop_signals()
        return self

    def training(self, progress: Progress) -> None:
        self.stage, self.progress, self.writes_summary = "training", progress, self.owner

    def __exit__(self, kind, error, traceback) -> bool:
        restore_signals(self.previous_handlers)
        if self.lock:
            self.lock.release()
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            where = f"epoch {self.progress.epoch}" if self.stage == "training" else self.stage
            interrupted = RunInterrupted(interrupted_message(where, self.run_dir))
            self.write_status("interrupted", str(interrupted))
            raise interrupted from None
        if kind is not None and issubclass(kind, Exception):
            reason = str(error) if isinstance(error, UserError) else one_line(error)
            self.write_status("failed", reason)
        return False

    def write_status(self, status: str, reason: str) -> None:
        if self.writes_summary:
            write_json(self.run_dir / "summary.json", {"status": status, "error": reason})
        elif self.owner:  # a resumed run, not changed yet: summary.json still says how it ended
            status = (read_summary(self.run_dir) or {}).get("status", status)
        self.trackers.finish(status, self.run_dir, None, reason)


def start_training(cfg, parts: Parts, progress: Progress, run_dir: Path, resumed) -> None:
    """What must be on disk before the first epoch: last.pt of epoch 0 for a new run (so a run
    killed in its first epoch can resume), and, when a completed run is extended, its final
    artifacts moved aside (they describe fewer epochs; a run stopped mid-extension must never
    read as completed)."""
    if not resumed:
        write_split_csv(run_dir / SPLIT_FILE, split_rows(parts.splits))
        save_checkpoint(run_dir / "last.pt", make_checkpoint(cfg, parts, progress, 0))
    elif (read_summary(run_dir) or {}).get("status") == "completed":
        moved = move_aside(run_dir, list(FINAL_ARTIFACTS))
        log.info("extending a completed run: its final artifacts are now in %s", moved)


def train(
    cfg: DictConfig, run_dir: str | Path | None = None, overrides: list[str] | None = None
) -> dict:
    """Fine-tune cfg.model on cfg.data; write metrics, summary, plots and checkpoints to run_dir.
    With cfg.resume=RUN_DIR, continue that run from RUN_DIR/last.pt, in RUN_DIR; `overrides`
    (default: what was typed on Hydra's command line) may extend it with epochs=N and may
    change nothing else."""
    started = time.time()
    cfg, run_dir, resumed = open_run(cfg, run_dir, overrides)
    with RunOutcome(run_dir, resumed) as outcome:
        outcome.trackers = trackers = open_trackers(cfg, run_dir, resumed)
        runtime = setup_runtime(cfg)
        parts = build_parts(cfg, runtime)
        change = check_resumed_data(cfg, parts, resumed, run_dir) if resumed else None
        progress = restore(parts, resumed, run_dir, runtime) if resumed else Progress()
        if change:
            progress.data_changes.append({"after_epoch": resumed["epoch"], "change": change})
        progress.tracking = trackers.run_ids()
        if outcome.owner:
            start_training(cfg, parts, progress, run_dir, resumed)
        outcome.training(progress)
        with MetricsLog(run_dir / "metrics.csv" if outcome.owner else None) as metrics:
            fit(cfg, parts, progress, run_dir, runtime, metrics, trackers)
        if not outcome.owner:
            return {"status": "completed", "best_val_acc": progress.best["val_acc"]}
        outcome.stage = "the final artifacts"
        extra = {
            "world_size": runtime.ranks.world_size,
            "seconds_total": time.time() - started,  # this invocation; epochs: metrics.csv
            "resumed_after_epoch": resumed["epoch"] if resumed else None,
            "stopped_early_at": progress.stopped_early_at,
            "data_identity": brief(parts.splits.identity),
            "data_changes": progress.data_changes,
            "trackers_off": trackers.off,  # logger= asked for them; the run dir has it all
        }
        summary = finish(cfg, parts, progress, run_dir, runtime, metrics.rows, extra)
        trackers.finish("completed", run_dir, summary)
    log.info("%s; run dir %s", result_line(summary), display_path(run_dir))
    return summary


def result_line(summary: dict) -> str:
    """The run's result in one line, saying which images measured each number and whether
    they also chose it."""
    best = summary["best_model"]
    if "test" not in summary:
        return (
            f"best val acc {best['accuracy']:.4f} at epoch {summary['best_epoch']}, macro F1 "
            f"{best['macro']['f1']:.4f} (epoch chosen on these val images: selection-biased)"
        )
    test = summary["test"]
    return (
        f"test acc {test['accuracy']:.4f}, macro F1 {test['macro']['f1']:.4f} on "
        f"{test['n']} test images never used to choose; weights of epoch "
        f"{summary['best_epoch']}, chosen by {summary.get('selection_metric', 'val_acc')} on the "
        f"select images (select acc {best['accuracy']:.4f})"
    )


def interrupted_before_training() -> str:
    """The one line for a Ctrl-C before train() ran; a run dir Hydra already made says so too."""
    message = "interrupted during start-up, before any training; nothing to resume"
    run_dir = RunStartGuard.new_run_dir
    if run_dir is not None and run_dir.is_dir() and not (run_dir / "summary.json").exists():
        write_json(run_dir / "summary.json", {"status": "interrupted", "error": message})
    return message


def interrupted_message(stage: str, run_dir: Path) -> str:
    """What was lost and how to go on, for an interrupt at any stage."""
    shown = display_path(run_dir)
    done = read_last_checkpoint(run_dir)
    if done is None:
        return (
            f"interrupted during {stage}, before any training; nothing to resume: run the "
            f"command again (add overwrite=true to reuse {shown})"
        )
    return (
        f"interrupted during {stage}; last.pt holds epoch {done['epoch']}. "
        f"Resume with: python -m hymtl.train resume={shown}"
    )


def run_sweep_job(cfg: DictConfig) -> float:
    """One job of a sweep, in a job dir that may hold this job from an earlier invocation of
    the same sweep: a completed run with the same config is kept, an interrupted or killed one
    resumes from its last.pt, a failed one starts again (its files moved aside). A job dir
    holding another config is refused (the hymtl sweeper refuses it before any job starts)."""
    job_dir = hydra_run_dir()
    state = run_state(job_dir, ARTIFACT_FILES)
    if state is None:
        return train(cfg)["best_val_acc"]
    config = to_plain_dict(cfg)
    if state.status == "running":
        raise UserError(refusal(job_dir, state))
    if not same_config(state.config, config):
        changed = config_differences(state.config or {}, config)[:3]
        raise UserError(
            f"{display_path(job_dir)} holds a run with another config ({'; '.join(changed)}); "
            "choose another hydra.sweep.dir="
        )
    if state.status == "completed":
        problem = kept_run_problem(read_summary(job_dir), cfg.data)
        if problem:
            raise UserError(
                f"{display_path(job_dir)} holds a completed run with the same config, but "
                f"{problem}; choose another hydra.sweep.dir="
            )
        log.info("%s: completed earlier with the same config; kept", display_path(job_dir))
        return float((read_summary(job_dir) or {}).get("best_val_acc", float("nan")))
    if state.status != "failed" and state.epoch is not None:
        log.info("%s: %s; resuming it", display_path(job_dir), state.describe())
        resume_cfg = cfg.copy()
        resume_cfg.resume = str(job_dir)
        return train(resume_cfg)["best_val_acc"]
    moved = move_aside(job_dir, present_files(job_dir, ARTIFACT_FILES))
    where = display_path(job_dir)
    log.info("%s: %s; starting again (old files: %s)", where, state.describe(), moved)
    return train(cfg)["best_val_acc"]


@hydra.main(version_base="1.3", config_path="pkg://hymtl.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """One run (or one job of a sweep); returns the best val accuracy for sweepers. A job that
    fails leaves its reason in its summary.json and, in a sweep, lets the other jobs go on."""
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    # Under torchrun the terminal is rank 0's: the other ranks, which fail alike, stay quiet.
    speaks = distributed.launched_ranks().is_main
    try:
        return run_sweep_job(cfg) if in_sweep else train(cfg)["best_val_acc"]
    except NothingToResume as message:
        if speaks:
            print(f"hymtl: {message}", file=sys.stderr)
        return float("nan")
    except RunInterrupted as error:
        if speaks:
            tell(f"hymtl: {error}")
        sys.exit(130)
    except UserError as error:
        reason = str(error)
    except Exception as error:
        if not in_sweep:
            raise  # a bug, not bad input: the traceback is what a bug report needs
        log.exception("job failed")
        reason = one_line(error)
    if speaks:
        print(f"hymtl: error: {reason}", file=sys.stderr)
    if not in_sweep:
        sys.exit(2)
    SweepOutcome.failed_here[str(hydra_run_dir())] = reason
    return float("nan")  # sweepers (Optuna) see a failed trial; SweepOutcome lists it at the end


def catch_stop_signals() -> dict:
    """SIGTERM (a scheduler, `kill`) and SIGHUP (the terminal closed) raise KeyboardInterrupt,
    as Ctrl-C does: the run ends `interrupted`, with the way to resume it. A SIGHUP ignored
    from the start (nohup) stays ignored. Returns the handlers replaced, for restore_signals."""
    replaced = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        replaced[signum] = signal.signal(signum, raise_keyboard_interrupt)
    return replaced


def restore_signals(replaced: dict) -> None:
    for signum, handler in replaced.items():
        if handler is not None:  # None: a handler set outside Python, which cannot be restored
            signal.signal(signum, handler)


def tell(line: str) -> None:
    """A line on stderr, when there is one: after SIGHUP the terminal may be gone (EIO)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def cli() -> None:
    """`python -m hymtl.train` and `hymtl-train`: exit status 1 if any job of a sweep failed.
    Overrides Hydra would refuse (in any job of a sweep, or under `--cfg job` too) are one
    `hymtl: error:` line and exit status 2 before anything is created."""
    from hymtl.cli.app import literal_values

    # SIGTERM and SIGHUP are Ctrl-C from the very start, not only once training runs.
    catch_stop_signals()
    try:
        # A value Hydra's grammar cannot read (a path with `=`, `[`, `'`, non-ASCII letters)
        # is quoted, as hymtl predict/evaluate/export do: paths work as typed.
        argv = literal_values(sys.argv[1:])
        problem = override_problem(argv) or multirun_problem(argv)
        if problem:
            if distributed.launched_ranks().is_main:
                print(f"hymtl: error: {problem}", file=sys.stderr)
            sys.exit(2)
        sys.argv = [sys.argv[0], *argv]  # Hydra reads its arguments from sys.argv
        main()
    except KeyboardInterrupt:  # before train() took over: composing, launching, Hydra's files
        tell(f"hymtl: {interrupted_before_training()}")
        sys.exit(130)
    if SweepOutcome.failed:
        sys.exit(1)


if __name__ == "__main__":
    # Run the copy of this module imported as `hymtl.train`, not this `__main__` one: launchers
    # that pickle the task function (joblib, submitit) can then refer to it by name.
    from hymtl.train import cli as importable_cli

    importable_cli()

"""The one training loop: `python -m hymtl.train [overrides]` or `train(cfg, run_dir)` from code.

Reads like torchvision's references/classification: train_one_epoch, evaluate, then artifacts.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from hymtl import UserError, distributed
from hymtl.artifacts import (
    MetricsLog,
    build_summary,
    save_checkpoint,
    write_json,
    write_plots,
    write_val_predictions,
)
from hymtl.callbacks import SweepOutcome
from hymtl.config import check_config, resolve_device, resolve_num_workers, to_plain_dict
from hymtl.data import make_loader
from hymtl.features import cached_feature_loaders
from hymtl.loop import NonFiniteLoss, evaluate, train_one_epoch
from hymtl.regularizers import weight_statistics
from hymtl.resume import (
    capture_rng,
    config_from_checkpoint,
    load_resume_checkpoint,
    restore_rng,
    truncate_metrics,
)
from hymtl.runtime import (
    autocast_for,
    resolve_precision,
    resolve_threads,
    reuse_freed_memory,
    seed_everything,
)
from hymtl.schema import register_configs

log = logging.getLogger("hymtl.train")

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


class RunInterrupted(Exception):
    pass


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Fine-tune cfg.model on cfg.data; write metrics, summary, plots and checkpoints to run_dir.
    With cfg.resume=RUN_DIR, continue that run from RUN_DIR/last.pt, in RUN_DIR."""
    started = time.time()
    resumed = load_resume_checkpoint(cfg.resume) if cfg.resume else None
    if resumed:
        cfg = config_from_checkpoint(resumed, cfg.resume)
        run_dir = Path(cfg.resume)
    check_config(cfg)
    run_dir = Path(run_dir) if run_dir is not None else hydra_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    ranks, device = distributed.start(resolve_device(cfg.device))
    cached_features = cfg.model.freeze_backbone and cfg.feature_cache
    if ranks.enabled and cached_features:
        raise UserError(
            "model.freeze_backbone=true trains only the head, on cached features: run it in one "
            "process (python -m hymtl.train), or add feature_cache=false under torchrun"
        )
    precision = resolve_precision(cfg.precision.value, device)
    autocast = autocast_for(device, precision)
    num_workers = resolve_num_workers(cfg.num_workers, device)
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
    plain_config = to_plain_dict(cfg)

    splits = build(cfg.data, seed=cfg.seed, _convert_="all")
    classes = splits.classes
    if cfg.batch_size > len(splits.train):
        raise UserError(
            f"batch_size={cfg.batch_size} is larger than the {len(splits.train)} training images; "
            "lower batch_size="
        )
    log.info(
        "data %s: %d train / %d val images, classes %s (%s)",
        *(splits.root, len(splits.train), len(splits.val), classes, splits.layout),
    )
    model = build(cfg.model, num_classes=len(classes)).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ranks.enabled:
        seed_everything(cfg.seed + ranks.rank)  # ... but each rank its own augmentations
    regularizer = build(cfg.regularizer)
    regularizer.attach(model)
    optimizer = build(cfg.optimizer, _convert_="all")(regularizer.param_groups(model))
    scheduler = build(cfg.scheduler)(optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    criterion = nn.CrossEntropyLoss()
    if cached_features:
        # Only the head trains: it runs on backbone features computed once (hymtl/features.py).
        step_model, train_loader, val_loader = cached_feature_loaders(
            model, splits, cfg.batch_size, num_workers, cfg.seed, device, autocast
        )
    else:
        pin = device.type == "cuda"
        train_sampler = None
        if ranks.enabled:
            train_sampler = DistributedSampler(
                splits.train, ranks.world_size, ranks.rank, shuffle=True, seed=cfg.seed
            )
        train_loader = make_loader(
            splits.train, cfg.batch_size, num_workers, True, cfg.seed, pin, train_sampler
        )
        val_loader = make_loader(
            distributed.val_shard(splits.val, ranks), cfg.batch_size, num_workers, False,
            cfg.seed, pin,
        )  # fmt: skip
        step_model = model
        if ranks.enabled:
            step_model = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        step_model = torch.compile(step_model) if cfg.compile else step_model
    channels_last = cfg.channels_last and not cached_features

    best = {"val_acc": -1.0, "epoch": 0, "eval": None}
    val = None  # the latest epoch's evaluation
    start_epoch = 1
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        scaler.load_state_dict(resumed["scaler"])
        best = {"val_acc": resumed["best_val_acc"], "epoch": resumed["best_epoch"]}
        best["eval"], val = resumed["best_eval"], resumed["last_eval"]
        start_epoch = resumed["epoch"] + 1
        if ranks.is_main:
            truncate_metrics(run_dir / "metrics.csv", resumed["epoch"])
        restore_rng(resumed["rng"], train_loader.generator)
        log.info("resuming %s after epoch %d", run_dir, resumed["epoch"])

    def checkpoint(epoch: int) -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "best_val_acc": best["val_acc"],
            "best_epoch": best["epoch"],
            "best_eval": best["eval"],
            "last_eval": val,
            "config": plain_config,
            "class_names": classes,
            "rng": capture_rng(train_loader.generator),
        }

    def save(name: str, epoch: int) -> None:
        if ranks.is_main:  # the run dir is rank 0's
            save_checkpoint(run_dir / name, checkpoint(epoch))

    if not resumed:  # so that a run killed during its first epoch can be resumed too
        save("last.pt", 0)
    metrics = MetricsLog(run_dir / "metrics.csv" if ranks.is_main else None)
    # Under torchrun the loop evaluates the plain module on its val shard: DDP's forward would
    # add collectives, and the shards can differ in their number of batches.
    eval_model = model if ranks.enabled else step_model
    progress = ranks.is_main
    run_name = f"{cfg.model.name} · regularizer={cfg.regularizer.name} · seed={cfg.seed}"
    previous_sigterm = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    epoch = start_epoch - 1
    try:
        epochs = range(start_epoch, cfg.epochs + 1)
        for epoch in tqdm(epochs, desc="epochs", disable=None if progress else True):
            epoch_start = time.time()
            lr = optimizer.param_groups[0]["lr"]
            tag = f"epoch {epoch}/{cfg.epochs}"
            if isinstance(train_loader.sampler, DistributedSampler):
                train_loader.sampler.set_epoch(epoch)  # a new shuffle each epoch
            train_stats = train_one_epoch(
                *(step_model, train_loader, criterion, regularizer, optimizer, scaler),
                *(device, autocast, channels_last, f"{tag} train", progress),
            )
            loss_sum, penalty_sum, correct, seen = distributed.sum_across_ranks(
                [train_stats[k] for k in ("loss_sum", "penalty_sum", "correct", "seen")],
                *(ranks, device),
            )
            distributed.sync_buffers(model, ranks)  # BatchNorm statistics: rank 0's, everywhere
            val = evaluate(
                *(eval_model, val_loader, criterion, device, autocast, channels_last),
                *(f"{tag} val", progress),
            )
            val = distributed.gather_evaluation(val, ranks)
            scheduler.step()
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
            if val["acc"] > best["val_acc"]:
                best = {"val_acc": val["acc"], "epoch": epoch, "eval": val}
                save("best.pt", epoch)
            save("last.pt", epoch)
            log.info(
                "%s  train loss %.4f penalty %.4f acc %.4f | val loss %.4f acc %.4f"
                " | lr %.2g | %.1fs",
                *(tag, row["train_loss"], row["train_penalty"], row["train_acc"]),
                *(row["val_loss"], row["val_acc"], lr, row["seconds"]),
            )
    except KeyboardInterrupt:
        done = epoch - 1
        raise RunInterrupted(
            f"interrupted during epoch {epoch}; last.pt holds epoch {done}. Resume with: "
            f"python -m hymtl.train resume={run_dir}"
        ) from None
    except NonFiniteLoss as error:
        raise NonFiniteLoss(
            f"{error} in epoch {epoch}; last good checkpoint kept: {run_dir}/last.pt "
            f"(epoch {epoch - 1}); lower optimizer.lr= or the penalty's λ"
        ) from None
    finally:
        metrics.close()
        signal.signal(signal.SIGTERM, previous_sigterm)

    if not ranks.is_main:
        return {"status": "completed", "best_val_acc": best["val_acc"], "rank": ranks.rank}
    summary = build_summary(cfg, plain_config, run_dir, splits, device, precision, best, val)
    summary["world_size"] = ranks.world_size
    summary["final_weights"] = weight_statistics(model)
    summary["threads"] = torch.get_num_threads()
    summary["seconds_total"] = time.time() - started  # this invocation; epochs: metrics.csv
    summary["resumed_after_epoch"] = resumed["epoch"] if resumed else None
    summary["seconds_per_epoch"] = sum(r["seconds"] for r in metrics.rows) / len(metrics.rows)
    write_val_predictions(
        run_dir / "val_predictions.csv", splits.val.samples, classes, best["eval"]
    )
    write_json(run_dir / "summary.json", summary)
    write_plots(summary, metrics.rows, splits, val, cfg, run_dir, run_name)
    log.info(
        "best val acc %.4f at epoch %d; macro F1 %.4f; run dir %s",
        *(best["val_acc"], best["epoch"], summary["best_model"]["macro"]["f1"], run_dir),
    )
    return summary


@hydra.main(version_base="1.3", config_path="pkg://hymtl.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """One run (or one job of a sweep); returns the best val accuracy for sweepers. A job that
    fails leaves its reason in its summary.json and, in a sweep, lets the other jobs go on."""
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    # Under torchrun the run dir and the terminal are rank 0's: the other ranks, which fail
    # alike, neither write its summary.json nor repeat the message.
    speaks = distributed.launched_ranks().is_main
    run_dir = Path(cfg.resume) if cfg.resume else hydra_run_dir()
    try:
        return train(cfg)["best_val_acc"]
    except RunInterrupted as error:
        if speaks:
            write_json(run_dir / "summary.json", {"status": "interrupted", "error": str(error)})
            print(f"hymtl: {error}", file=sys.stderr)
        sys.exit(130)
    except UserError as error:
        reason = str(error)
    except Exception as error:
        if not in_sweep:
            raise  # a bug, not bad input: the traceback is what a bug report needs
        log.exception("job failed")
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
    if speaks:
        write_json(run_dir / "summary.json", {"status": "failed", "error": reason})
        print(f"hymtl: error: {reason}", file=sys.stderr)
    if not in_sweep:
        sys.exit(2)
    return float("nan")  # sweepers (Optuna) see a failed trial; SweepOutcome lists it at the end


def cli() -> None:
    """`python -m hymtl.train` and `hymtl-train`: exit status 1 if any job of a sweep failed."""
    main()
    if SweepOutcome.failed:
        sys.exit(1)


if __name__ == "__main__":
    # Run the copy of this module imported as `hymtl.train`, not this `__main__` one: launchers
    # that pickle the task function (joblib, submitit) can then refer to it by name.
    from hymtl.train import cli as importable_cli

    importable_cli()

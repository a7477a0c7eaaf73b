"""The one training loop: `python -m hymtl.train [overrides]` or `train(cfg, run_dir)` from code.

Reads like torchvision's references/classification: train_one_epoch, evaluate, then artifacts.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
import torchvision
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from tqdm import tqdm

import hymtl
from hymtl import UserError
from hymtl.artifacts import (
    MetricsLog,
    classification_metrics,
    save_checkpoint,
    write_json,
    write_val_predictions,
)
from hymtl.config import check_config, resolve_device, resolve_num_workers, to_plain_dict
from hymtl.data import make_loader
from hymtl.features import cached_feature_loaders
from hymtl.plots import plot_confusion_matrix, plot_curves, write_prediction_grid
from hymtl.regularizers import weight_statistics
from hymtl.schema import register_configs

log = logging.getLogger("hymtl.train")

register_configs()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_for(device: torch.device, precision: str):
    """A zero-argument context-manager factory: autocast for bf16/fp16, nothing for fp32."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtypes[precision])


def to_device(tensor: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    if channels_last and tensor.dim() == 4:
        return tensor.to(device, non_blocking=True, memory_format=torch.channels_last)
    return tensor.to(device, non_blocking=True)


def train_one_epoch(
    model,
    loader,
    criterion,
    regularizer,
    optimizer,
    scaler,
    device,
    autocast,
    channels_last,
    desc="",
):
    model.train()
    data_loss_sum = penalty_sum = 0.0
    correct = seen = 0
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=None):
        images = to_device(images, device, channels_last)
        targets = targets.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        data_loss = criterion(logits.float(), targets)
        penalty = regularizer.penalty()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(data_loss + penalty).backward()
        scaler.step(optimizer)
        scaler.update()
        batch = targets.size(0)
        data_loss_sum += data_loss.item() * batch
        penalty_sum += penalty.item() * batch
        correct += (logits.argmax(1) == targets).sum().item()
        seen += batch
    return {"loss": data_loss_sum / seen, "penalty": penalty_sum / seen, "acc": correct / seen}


@torch.inference_mode()
def evaluate(model, loader, criterion, device, autocast, channels_last, desc=""):
    model.eval()
    loss_sum = 0.0
    targets_all, preds_all, probs_all = [], [], []
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=None):
        images = to_device(images, device, channels_last)
        targets = targets.to(device, non_blocking=True)
        with autocast():
            logits = model(images).float()
        loss_sum += criterion(logits, targets).item() * targets.size(0)
        probs, preds = logits.softmax(1).max(1)
        targets_all += targets.tolist()
        preds_all += preds.tolist()
        probs_all += probs.tolist()
    n = len(targets_all)
    correct = sum(t == p for t, p in zip(targets_all, preds_all))
    return {
        "loss": loss_sum / n,
        "acc": correct / n,
        "targets": targets_all,
        "preds": preds_all,
        "probs": probs_all,
    }


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


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Fine-tune cfg.model on cfg.data; write metrics, summary, plots and checkpoints to run_dir."""
    started = time.time()
    check_config(cfg)
    run_dir = Path(run_dir) if run_dir is not None else hydra_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision.value, device)
    autocast = autocast_for(device, precision)
    num_workers = resolve_num_workers(cfg.num_workers, device)
    seed_everything(cfg.seed)
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
    regularizer = build(cfg.regularizer)
    regularizer.attach(model)
    optimizer = build(cfg.optimizer, _convert_="all")(regularizer.param_groups(model))
    scheduler = build(cfg.scheduler)(optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    criterion = nn.CrossEntropyLoss()
    if cfg.model.freeze_backbone:
        # Only the head trains: it runs on backbone features computed once (hymtl/features.py).
        step_model, train_loader, val_loader = cached_feature_loaders(
            model, splits, cfg.batch_size, num_workers, cfg.seed, device, autocast
        )
    else:
        pin = device.type == "cuda"
        train_loader = make_loader(splits.train, cfg.batch_size, num_workers, True, cfg.seed, pin)
        val_loader = make_loader(splits.val, cfg.batch_size, num_workers, False, cfg.seed, pin)
        step_model = torch.compile(model) if cfg.compile else model
    channels_last = cfg.channels_last and not cfg.model.freeze_backbone

    metrics = MetricsLog(run_dir / "metrics.csv")
    best = {"val_acc": -1.0, "epoch": 0}
    run_name = f"{cfg.model.name} · regularizer={cfg.regularizer.name} · seed={cfg.seed}"
    try:
        for epoch in tqdm(range(1, cfg.epochs + 1), desc="epochs", disable=None):
            epoch_start = time.time()
            lr = optimizer.param_groups[0]["lr"]
            tag = f"epoch {epoch}/{cfg.epochs}"
            train_stats = train_one_epoch(
                *(step_model, train_loader, criterion, regularizer, optimizer, scaler),
                *(device, autocast, channels_last, f"{tag} train"),
            )
            val = evaluate(
                step_model, val_loader, criterion, device, autocast, channels_last, f"{tag} val"
            )
            scheduler.step()
            row = {
                "epoch": epoch,
                "train_loss": train_stats["loss"],
                "train_penalty": train_stats["penalty"],
                "train_acc": train_stats["acc"],
                "val_loss": val["loss"],
                "val_acc": val["acc"],
                "lr": lr,
                "seconds": time.time() - epoch_start,
            }
            metrics.append(row)
            checkpoint = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best_val_acc": max(best["val_acc"], val["acc"]),
                "config": plain_config,
                "class_names": classes,
            }
            if val["acc"] > best["val_acc"]:
                best = {"val_acc": val["acc"], "epoch": epoch, "eval": val}
                save_checkpoint(run_dir / "best.pt", checkpoint)
            save_checkpoint(run_dir / "last.pt", checkpoint)
            log.info(
                "%s  train loss %.4f penalty %.4f acc %.4f | val loss %.4f acc %.4f"
                " | lr %.2g | %.1fs",
                *(tag, row["train_loss"], row["train_penalty"], row["train_acc"]),
                *(row["val_loss"], row["val_acc"], lr, row["seconds"]),
            )
    finally:
        metrics.close()

    summary = {
        "status": "completed",
        "run_dir": str(run_dir),
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None,
        "classes": classes,
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "data_layout": splits.layout,
        "skipped_files": [{"path": p, "reason": r} for p, r in splits.skipped],
        "device": str(device),
        "precision": precision,
        "epochs": cfg.epochs,
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "best_model": classification_metrics(
            best["eval"]["targets"], best["eval"]["preds"], classes
        ),
        "final_model": classification_metrics(val["targets"], val["preds"], classes),
        "final_weights": weight_statistics(model),
        "seconds_total": time.time() - started,
        "seconds_per_epoch": sum(r["seconds"] for r in metrics.rows) / len(metrics.rows),
        "versions": {
            "hymtl": hymtl.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": sys.version.split()[0],
        },
        "config": plain_config,
    }
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


def write_plots(summary, rows, splits, last_eval, cfg, run_dir: Path, run_name: str) -> None:
    plot_curves(rows, run_dir / "curves.png", run_name)
    best = summary["best_model"]
    plot_confusion_matrix(
        best["confusion_matrix"],
        summary["classes"],
        run_dir / "confusion_matrix.png",
        f"val, best epoch {summary['best_epoch']} (acc {best['accuracy']:.4f})",
    )
    write_prediction_grid(
        *(splits.val, splits.classes, last_eval, cfg.grid_images, cfg.data.mean, cfg.data.std),
        run_dir / "predictions.png",
        f"val predictions after epoch {cfg.epochs} (red = wrong) · {run_name}",
    )
    write_prediction_grid(
        *(splits.val, splits.classes, last_eval, 8, cfg.data.mean, cfg.data.std),
        run_dir / "errors.png",
        f"most confidently wrong val images after epoch {cfg.epochs} · {run_name}",
        errors_only=True,
    )


@hydra.main(version_base="1.3", config_path="pkg://hymtl.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        summary = train(cfg)
    except UserError as error:
        # One line for the person, and the reason kept in the run dir for sweeps and reports.
        print(f"hymtl: error: {error}", file=sys.stderr)
        write_json(hydra_run_dir() / "summary.json", {"status": "failed", "error": str(error)})
        sys.exit(2)
    return summary["best_val_acc"]


if __name__ == "__main__":
    main()

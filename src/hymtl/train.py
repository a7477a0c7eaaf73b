"""The one training loop: `python -m hymtl.train [overrides]` or `train(cfg, run_dir)` from code.

Reads like torchvision's references/classification: train_one_epoch, evaluate, then artifacts.
"""

from __future__ import annotations

import contextlib
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
from torch.utils.data import DataLoader
from tqdm import tqdm

import hymtl
from hymtl import UserError
from hymtl.artifacts import (
    MetricsLog,
    classification_metrics,
    save_checkpoint,
    write_json,
)
from hymtl.config import check_config, resolve_device, to_plain_dict
from hymtl.plots import (
    choose_grid_indices,
    make_prediction_grid,
    plot_confusion_matrix,
    plot_curves,
)
from hymtl.schema import register_configs

log = logging.getLogger("hymtl.train")

register_configs()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch in each worker from its generator; numpy and random follow it.
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def make_loaders(splits, batch_size: int, num_workers: int, seed: int, device: torch.device):
    common = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        worker_init_fn=seed_worker,
    )
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(splits.train, shuffle=True, generator=generator, **common)
    val_loader = DataLoader(splits.val, shuffle=False, **common)
    return train_loader, val_loader


def autocast_for(device: torch.device, precision: str):
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])


def train_one_epoch(model, loader, criterion, regularizer, optimizer, device, precision, desc=""):
    model.train()
    data_loss_sum = penalty_sum = 0.0
    correct = seen = 0
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=None):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with autocast_for(device, precision):
            logits = model(images)
            data_loss = criterion(logits.float(), targets)
        penalty = regularizer.penalty()
        loss = data_loss + penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batch = targets.size(0)
        data_loss_sum += data_loss.item() * batch
        penalty_sum += penalty.item() * batch
        correct += (logits.argmax(1) == targets).sum().item()
        seen += batch
    return {"loss": data_loss_sum / seen, "penalty": penalty_sum / seen, "acc": correct / seen}


@torch.inference_mode()
def evaluate(model, loader, criterion, device, precision, desc=""):
    model.eval()
    loss_sum = 0.0
    targets_all, preds_all, probs_all = [], [], []
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=None):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with autocast_for(device, precision):
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


def write_prediction_grid(splits, val_result, count, mean, std, path, title):
    indices = choose_grid_indices(val_result["targets"], val_result["preds"], count)
    mean, std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    images = [(splits.val[i][0] * std + mean).clamp(0, 1).permute(1, 2, 0).numpy() for i in indices]
    classes = splits.classes
    make_prediction_grid(
        images,
        [classes[val_result["targets"][i]] for i in indices],
        [classes[val_result["preds"][i]] for i in indices],
        [val_result["probs"][i] for i in indices],
        path,
        title,
    )


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Fine-tune cfg.model on cfg.data; write metrics, summary, plots and checkpoints to run_dir."""
    started = time.time()
    check_config(cfg)
    run_dir = Path(run_dir) if run_dir is not None else hydra_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    precision = cfg.precision.name if hasattr(cfg.precision, "name") else str(cfg.precision)
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
        splits.root,
        len(splits.train),
        len(splits.val),
        classes,
        splits.layout,
    )
    model = build(cfg.model, num_classes=len(classes)).to(device)
    regularizer = build(cfg.regularizer)
    regularizer.attach(model)
    optimizer = build(cfg.optimizer, _convert_="all")(regularizer.param_groups(model))
    scheduler = build(cfg.scheduler)(optimizer)
    criterion = nn.CrossEntropyLoss()
    train_loader, val_loader = make_loaders(
        splits, cfg.batch_size, cfg.num_workers, cfg.seed, device
    )

    metrics = MetricsLog(run_dir / "metrics.csv")
    best = {"val_acc": -1.0, "epoch": 0}
    run_name = f"{cfg.model.name} · regularizer={cfg.regularizer.name} · seed={cfg.seed}"
    epochs = tqdm(range(1, cfg.epochs + 1), desc="epochs", disable=None)
    try:
        for epoch in epochs:
            epoch_start = time.time()
            lr = optimizer.param_groups[0]["lr"]
            tag = f"epoch {epoch}/{cfg.epochs}"
            train_stats = train_one_epoch(
                model,
                train_loader,
                criterion,
                regularizer,
                optimizer,
                device,
                precision,
                f"{tag} train",
            )
            val = evaluate(model, val_loader, criterion, device, precision, f"{tag} val")
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
                tag,
                row["train_loss"],
                row["train_penalty"],
                row["train_acc"],
                row["val_loss"],
                row["val_acc"],
                lr,
                row["seconds"],
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
    write_json(run_dir / "summary.json", summary)
    plot_curves(metrics.rows, run_dir / "curves.png", run_name)
    best_metrics = summary["best_model"]
    plot_confusion_matrix(
        best_metrics["confusion_matrix"],
        classes,
        run_dir / "confusion_matrix.png",
        f"val, best epoch {best['epoch']} (acc {best_metrics['accuracy']:.4f})",
    )
    write_prediction_grid(
        splits,
        val,
        cfg.grid_images,
        cfg.data.mean,
        cfg.data.std,
        run_dir / "predictions.png",
        f"val predictions after epoch {cfg.epochs} (red = wrong) · {run_name}",
    )
    log.info(
        "best val acc %.4f at epoch %d; macro F1 %.4f; run dir %s",
        best["val_acc"],
        best["epoch"],
        best_metrics["macro"]["f1"],
        run_dir,
    )
    return summary


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

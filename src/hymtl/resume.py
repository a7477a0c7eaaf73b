"""What a run needs to continue exactly where it stopped: RNG states, the checkpoint's config,
and metrics.csv cut back to the checkpoint's epoch.

Resume works at epoch granularity: last.pt is written (atomically) at the end of every epoch,
and once before the first, so a run killed at any moment loses at most the epoch in flight and
redoes it with the same random numbers.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from hymtl import UserError
from hymtl.artifacts import METRIC_COLUMNS, atomic_write, load_checkpoint
from hymtl.schema import Config


def capture_rng(loader_generator: torch.Generator) -> dict:
    """Every random stream the loop draws from, as plain types and tensors (weights_only-safe)."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss],
        "python": random.getstate(),
        "loader": loader_generator.get_state(),
    }


def restore_rng(state: dict, loader_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    random.setstate(state["python"])
    loader_generator.set_state(state["loader"])


def load_resume_checkpoint(run_dir: str | Path) -> dict:
    path = Path(run_dir).expanduser() / "last.pt"
    if not path.is_file():
        raise UserError(f"resume={run_dir}: no last.pt there; give the directory of an earlier run")
    try:
        checkpoint = load_checkpoint(path)
    except Exception as error:
        raise UserError(f"resume={run_dir}: last.pt cannot be read ({error})") from None
    if "rng" not in checkpoint:
        raise UserError(f"resume={run_dir}: last.pt has no resume state (written by another tool?)")
    return checkpoint


def config_from_checkpoint(checkpoint: dict, run_dir: str | Path) -> DictConfig:
    """The interrupted run's own config, typed again by the schema."""
    cfg = OmegaConf.merge(OmegaConf.structured(Config), checkpoint["config"])
    cfg.resume = str(run_dir)
    return cfg


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop rows after `last_epoch` (an epoch that finished its row but not its checkpoint is
    redone, identically), so metrics.csv never has duplicate or missing rows."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) <= last_epoch]

    def write(tmp):
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)

"""Checks on a composed config that the schema's types cannot express, run before any work."""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from hymtl import UserError
from hymtl.config.compose import ALLOWED_TARGET_PREFIXES, find_targets
from hymtl.training.runtime import resolve_device


def unknown_keys(node: DictConfig, path: str = "") -> list[str]:
    """Keys the schema does not know, with the known key they were probably meant to be.
    Hydra's `+key=value` adds a key even to a typed node; nothing would ever read it."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return []
    known = [field.name for field in dataclasses.fields(schema)]
    found = []
    for key in node.keys():
        where = f"{path}{key}"
        if key not in known:
            guess = difflib.get_close_matches(str(key), known, n=1)
            found.append(f"{where}" + (f" (did you mean {path}{guess[0]}?)" if guess else ""))
        elif isinstance(node._get_node(key), DictConfig):
            found += unknown_keys(node[key], f"{where}.")
    return found


def non_finite_values(node: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            found += non_finite_values(node[key], f"{path}{key}.")
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            found += non_finite_values(value, f"{path}{index}.")
    elif isinstance(node, float) and not math.isfinite(node):
        found.append(f"{path.rstrip('.')}={node}")
    return found


def check_config(cfg: DictConfig) -> None:
    """Raise UserError with one line for values that cannot work."""
    check_complete(cfg)
    check_known_keys(cfg)
    check_finite(cfg)
    check_targets(cfg)
    problems = run_problems(cfg)
    problems += data_problems(cfg.data)
    problems += selection_problems(cfg)
    problems += evaluation_problems(cfg.evaluation)
    problems += run_dir_problems(cfg)
    problems += penalty_problems(cfg)
    problems += optimizer_problems(cfg.optimizer)
    if problems:
        raise UserError("; ".join(problems))
    check_precision_fits_device(cfg)


def check_complete(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        needs_root = "data.root" in missing
        hint = ": data=imagefolder needs data.root=/path/to/images" if needs_root else ""
        raise UserError(f"missing value for {', '.join(missing)}{hint}")


def check_known_keys(cfg: DictConfig) -> None:
    unknown = unknown_keys(cfg)
    if unknown:
        raise UserError(
            f"unknown config key(s): {', '.join(unknown)}; "
            "`python -m hymtl.train --cfg job` lists every key"
        )


def check_finite(cfg: DictConfig) -> None:
    non_finite = non_finite_values(cfg)
    if non_finite:
        raise UserError(f"{', '.join(non_finite)}: every number in the config must be finite")


def check_targets(cfg: DictConfig) -> None:
    for where, target in find_targets(cfg):
        if not target.startswith(ALLOWED_TARGET_PREFIXES):
            raise UserError(
                f"{where}={target} is not allowed: targets must start with one of "
                f"{', '.join(ALLOWED_TARGET_PREFIXES)}"
            )


def run_problems(cfg: DictConfig) -> list[str]:
    """The top-level knobs of one run: its length, batches, workers, seed, plots."""
    problems = []
    if cfg.epochs < 1:
        problems.append(f"epochs={cfg.epochs} must be >= 1")
    if cfg.batch_size < 1:
        problems.append(f"batch_size={cfg.batch_size} must be >= 1")
    if cfg.images_on_device not in ("auto", True, False):
        problems.append(f"images_on_device={cfg.images_on_device} must be auto, true or false")
    if cfg.num_workers is not None and cfg.num_workers < 0:
        problems.append(f"num_workers={cfg.num_workers} must be >= 0")
    threads = cfg.threads
    if not (threads in (None, "auto") or (type(threads) is int and threads >= 1)):
        problems.append(f"threads={threads} must be auto, a number >= 1, or null (torch's default)")
    if not 0 <= cfg.seed < 2**32:
        problems.append(f"seed={cfg.seed} must be in [0, 2**32)")
    if cfg.grid_images < 1:
        problems.append(f"grid_images={cfg.grid_images} must be >= 1")
    return problems


def data_problems(data: DictConfig) -> list[str]:
    problems = []
    for key in ("image_size", "resize_size"):
        if data[key] < 1:
            problems.append(f"data.{key}={data[key]} must be >= 1")
    if data.min_colors < 0:
        problems.append(f"data.min_colors={data.min_colors} must be >= 0")
    cache_mb = data.cache_max_mb
    is_number = isinstance(cache_mb, (int, float)) and not isinstance(cache_mb, bool)
    if not (cache_mb == "auto" or (is_number and cache_mb >= 0)):
        problems.append(f"data.cache_max_mb={cache_mb} must be a number of MiB >= 0, or auto")
    if not 0 < data.val_fraction < 1:
        problems.append(f"data.val_fraction={data.val_fraction} must be between 0 and 1")
    return problems


def selection_problems(cfg: DictConfig) -> list[str]:
    """The loss that trains and the early stopping that ends a run."""
    problems = []
    if not 0 <= cfg.loss.label_smoothing < 1:
        problems.append(f"loss.label_smoothing={cfg.loss.label_smoothing} must be in [0, 1)")
    patience = cfg.early_stopping.patience
    if patience is not None and patience < 1:
        problems.append(f"early_stopping.patience={patience} must be >= 1")
    return problems


def run_dir_problems(cfg: DictConfig) -> list[str]:
    if cfg.resume and cfg.overwrite:
        return ["resume= continues a run and overwrite=true replaces one; choose one"]
    return []


def penalty_problems(cfg: DictConfig) -> list[str]:
    problems = []
    for key in ("lambda_l1", "lambda_l2"):
        if cfg[key] < 0:
            problems.append(f"{key}={cfg[key]} must be >= 0")
    for key in ("l1", "l2", "weight_decay", "alpha", "beta"):
        if cfg.regularizer[key] < 0:
            problems.append(f"regularizer.{key}={cfg.regularizer[key]} must be >= 0")
    return problems


def optimizer_problems(optimizer: DictConfig) -> list[str]:
    problems = []
    for key in ("momentum", "eps"):
        if key in optimizer and optimizer[key] < 0:
            problems.append(f"optimizer.{key}={optimizer[key]} must be >= 0")
    if "lr" in optimizer and optimizer.lr <= 0:
        problems.append(f"optimizer.lr={optimizer.lr} must be > 0")
    return problems


def check_precision_fits_device(cfg: DictConfig) -> None:
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.precision.value == "fp16":
        raise UserError(
            "precision=fp16 on a CPU has no fast kernels (one ResNet-18 step takes minutes); "
            "use precision=auto or bf16 (or fp32)"
        )


def evaluation_problems(evaluation: DictConfig) -> list[str]:
    problems = []
    if not 0 < evaluation.select_fraction < 1:
        fraction = evaluation.select_fraction
        problems.append(f"evaluation.select_fraction={fraction} must be between 0 and 1")
    if not 0 <= evaluation.split_seed < 2**32:
        problems.append(f"evaluation.split_seed={evaluation.split_seed} must be in [0, 2**32)")
    if evaluation.protocol.value == "kfold":
        if evaluation.folds < 2:
            problems.append(f"evaluation.folds={evaluation.folds} must be >= 2")
        elif not 0 <= evaluation.fold < evaluation.folds:
            problems.append(
                f"evaluation.fold={evaluation.fold} must be in 0..{evaluation.folds - 1} "
                f"(evaluation.folds={evaluation.folds})"
            )
    return problems

"""Checks on a composed config that the schema's types cannot express, run before any work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from hymtl import UserError, distributed

# `_target_`s are imported and called by hydra.utils.instantiate: only these packages may be named.
ALLOWED_TARGET_PREFIXES = ("hymtl.", "torch.optim.", "torch.nn.", "torchvision.")


def find_targets(node: Any, path: str = "") -> list[tuple[str, str]]:
    found = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            value = node._get_node(key)
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                found.append((where, str(node[key])))
            else:
                found += find_targets(value, where)
    elif isinstance(node, ListConfig):
        for index, value in enumerate(node):
            found += find_targets(value, f"{path}[{index}]")
    return found


def check_config(cfg: DictConfig) -> None:
    """Raise UserError with one line for values that cannot work."""
    for where, target in find_targets(cfg):
        if not target.startswith(ALLOWED_TARGET_PREFIXES):
            raise UserError(
                f"{where}={target} is not allowed: targets must start with one of "
                f"{', '.join(ALLOWED_TARGET_PREFIXES)}"
            )
    problems = []
    if cfg.epochs < 1:
        problems.append(f"epochs={cfg.epochs} must be >= 1")
    if cfg.batch_size < 1:
        problems.append(f"batch_size={cfg.batch_size} must be >= 1")
    if cfg.num_workers is not None and cfg.num_workers < 0:
        problems.append(f"num_workers={cfg.num_workers} must be >= 0")
    for key in ("lambda_l1", "lambda_l2"):
        if cfg[key] < 0:
            problems.append(f"{key}={cfg[key]} must be >= 0")
    for key in ("l1", "l2", "weight_decay"):
        if cfg.regularizer[key] < 0:
            problems.append(f"regularizer.{key}={cfg.regularizer[key]} must be >= 0")
    if "lr" in cfg.optimizer and cfg.optimizer.lr <= 0:
        problems.append(f"optimizer.lr={cfg.optimizer.lr} must be > 0")
    if problems:
        raise UserError("; ".join(problems))
    resolve_device(cfg.device)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device={name} but CUDA is not available here; use device=cpu or device=auto"
        )
    return device


def resolve_num_workers(num_workers: int | None, device: torch.device) -> int:
    if num_workers is not None:
        return num_workers
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def to_plain_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain Python types (safe for JSON and weights_only checkpoints)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


# Resolvers used by conf/config.yaml and conf/hparams_search/*.yaml.
def fresh_run_dir(resume: str | None, fresh: str) -> str:
    """Hydra's run dir: the usual timestamped one, or for `resume=RUN_DIR` a sub-folder of the
    resumed run for this invocation's log and .hydra (the run's artifacts stay in RUN_DIR).
    Under torchrun, ranks other than 0 get a folder outside it (distributed.hydra_output_dir)."""
    run_dir = fresh if not resume else str(Path(resume) / "resumed" / Path(fresh).name)
    return distributed.hydra_output_dir(run_dir)


def sqlite_url(path: str) -> str:
    """An Optuna storage URL for `path`, creating its folder: the study is opened before Hydra
    makes the sweep dir, and SQLite cannot create folders."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


OmegaConf.register_new_resolver("hymtl_run_dir", fresh_run_dir, replace=True)
OmegaConf.register_new_resolver("hymtl_sqlite", sqlite_url, replace=True)

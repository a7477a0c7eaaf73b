"""What every tracker sends: the config flattened, the final metrics, the run's context."""

from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the config as MLflow params and TensorBoard hparams."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return flat


def final_metrics(summary: dict) -> dict[str, float]:
    macro = summary["best_model"]["macro"]
    return {
        "best_val_acc": summary["best_val_acc"],
        "best_macro_precision": macro["precision"],
        "best_macro_recall": macro["recall"],
        "best_macro_f1": macro["f1"],
    }


def run_context(cfg: DictConfig) -> dict[str, Any]:
    """What Hydra knows about this run: the experiment and search chosen, the sweep and job."""
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    choices = hydra_cfg.runtime.choices
    context = {
        "experiment": choices.get("experiment"),
        "hparams_search": choices.get("hparams_search"),
    }
    if str(hydra_cfg.mode).endswith("MULTIRUN"):
        context["sweep_dir"] = hydra_cfg.sweep.dir
        context["job"] = hydra_cfg.job.num
    return context

"""What a run needs to continue exactly where it stopped: RNG states, the checkpoint's config,
and metrics.csv cut back to the checkpoint's epoch.

Resume works at epoch granularity: last.pt is written (atomically) at the end of every epoch,
and once before the first, so a run killed at any moment loses at most the epoch in flight and
redoes it with the same random numbers.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from hymtl import UserError, display_path
from hymtl.config.schema import Config
from hymtl.run.artifacts import METRIC_COLUMNS, atomic_write, load_checkpoint
from hymtl.run.rundir import read_summary
from hymtl.training.epoch import Progress, best_value
from hymtl.training.runtime import restore_rng
from hymtl.training.setup import Parts, Runtime

log = logging.getLogger("hymtl.train")


class NothingToResume(UserError):
    """resume= of a run that already completed all its epochs: not an error, nothing to do."""


def load_resume_checkpoint(run_dir: str | Path) -> dict:
    """RUN_DIR/last.pt, or one line saying why `run_dir` holds no run to resume. Reads only."""
    path = Path(run_dir).expanduser()
    shown = display_path(run_dir)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise UserError(f"resume={shown} {what}; give the directory of an earlier run")
    if not (path / "last.pt").is_file():
        if (path / "multirun.yaml").is_file():
            raise UserError(
                f"resume={shown} is a sweep directory, not a run: re-run the same -m command "
                f"to continue its jobs, or resume one job with resume={shown}/<job>"
            )
        runs = sorted(child.name for child in path.iterdir() if (child / "last.pt").is_file())
        if runs:
            raise UserError(
                f"resume={shown} is not a run but holds runs in its sub-folders "
                f"({', '.join(display_path(name) for name in runs[:3])}); "
                f"resume={shown}/<one of them>"
            )
        raise UserError(f"resume={shown} holds no hymtl run (no last.pt there)")
    try:
        checkpoint = load_checkpoint(path / "last.pt")
    except Exception as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"resume={shown}: last.pt cannot be read ({first_line})") from None
    if not isinstance(checkpoint, dict) or not {"rng", "config", "epoch"} <= set(checkpoint):
        raise UserError(f"resume={shown}: last.pt has no resume state (written by another tool?)")
    return checkpoint


def lookup(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return "<absent>"
        node = node[part]
    return node


# Where a `_target_` recorded by an older hymtl now lives, so its runs still resume.
MOVED_TARGETS = {
    "hymtl.models.build_model": "hymtl.training.models.build_model",
    "hymtl.regularizers.Regularizer": "hymtl.training.regularizers.Regularizer",
}


def with_current_targets(config: dict) -> dict:
    """`config` with every moved `_target_` renamed to where it lives now."""
    if isinstance(config, dict):
        return {
            key: MOVED_TARGETS.get(value, value)
            if key == "_target_"
            else with_current_targets(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [with_current_targets(item) for item in config]
    return config


def resumed_config(checkpoint: dict, run_dir: str | Path, overrides: list[str], cfg) -> DictConfig:
    """The interrupted run's own config, typed again by the schema, with what this invocation's
    overrides may change: `epochs=N` at least the run's extends it, `logger=`/`logger.*` switch
    its trackers; an override that would change anything else is refused by name, never
    silently ignored. `cfg` is the config this invocation composed (its values for the
    overrides)."""
    run_config = with_current_targets(checkpoint["config"])
    resumed = OmegaConf.merge(OmegaConf.structured(Config), run_config)
    for key in OmegaConf.missing_keys(resumed):  # a key newer than the run: today's default
        OmegaConf.update(resumed, key, OmegaConf.select(cfg, key))
    resumed.resume = str(run_dir)
    changed = []
    new = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key in ("resume", "overwrite") and not override.is_delete():
            continue
        if key == "resume_allow_data_change":  # how to start this invocation, not the run
            resumed.resume_allow_data_change = cfg.resume_allow_data_change
            continue
        if key == "logger" or key.startswith("logger."):
            # Trackers mirror the run and change nothing it computes: any may be switched.
            OmegaConf.update(resumed, key, OmegaConf.select(cfg, key), merge=False)
            continue
        if key == "epochs":
            if cfg.epochs < run_config["epochs"]:
                raise UserError(
                    f"resume={display_path(run_dir)} epochs={cfg.epochs}: the run has "
                    f"{run_config['epochs']} epochs; resume can extend a run, not shorten it"
                )
            resumed.epochs = cfg.epochs
        elif override.is_delete() or lookup(new, key) != lookup(run_config, key):
            changed.append(f"{override.input_line} (the run has {lookup(run_config, key)})")
    if changed:
        raise UserError(
            f"resume={display_path(run_dir)} continues a run with its own config; these overrides "
            f"would change it: {'; '.join(changed)}. Drop them, or start a new run"
        )
    summary = read_summary(run_dir) or {}
    if summary.get("status") == "completed":
        extended = resumed.epochs > run_config["epochs"]
        if summary.get("stopped_early_at") and not extended:
            raise NothingToResume(
                f"resume={display_path(run_dir)}: the run stopped early after epoch "
                f"{summary['stopped_early_at']}; nothing to do (add epochs=N to train it further: "
                "early stopping's patience count then restarts after that epoch)"
            )
        if checkpoint["epoch"] >= resumed.epochs:
            raise NothingToResume(
                f"resume={display_path(run_dir)}: the run already completed its {resumed.epochs} "
                "epochs; nothing to do (add epochs=N to train it further)"
            )
    return resumed


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

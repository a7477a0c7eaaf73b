"""A sweep job's directory may hold this job from an earlier invocation of the same sweep:
what the job does with it (the re-run policy that lets a sweep be run again to continue)."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hymtl.config.compose import hydra_quoted, to_plain_dict
from hymtl.data.identity import kept_run_problem
from hymtl.errors import UserError, display_path
from hymtl.run.rundir import (
    ARTIFACT_FILES,
    config_differences,
    move_aside,
    present_files,
    read_summary,
    refusal,
    run_state,
    same_config,
)

log = logging.getLogger("hymtl.train")


def prepare_sweep_job(cfg: DictConfig, job_dir: Path) -> tuple[DictConfig | None, float | None]:
    """(the config to train, None), or (None, the kept result). A completed run with the same
    config is kept, an interrupted or killed one resumes from its last.pt, a failed one starts
    again (its files moved aside). A job dir holding another config, or a completed run on
    other data, is refused (the sweep's start-up guard refuses it before any job starts)."""
    state = run_state(job_dir, ARTIFACT_FILES)
    if state is None:
        return cfg, None
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
        return None, float((read_summary(job_dir) or {}).get("best_val_acc", float("nan")))
    if state.status != "failed" and state.epoch is not None:
        log.info("%s: %s; resuming it", display_path(job_dir), state.describe())
        resume_cfg = cfg.copy()
        resume_cfg.resume = str(job_dir)
        return resume_cfg, None
    moved = move_aside(job_dir, present_files(job_dir, ARTIFACT_FILES))
    where = display_path(job_dir)
    log.info("%s: %s; starting again (old files: %s)", where, state.describe(), moved)
    return cfg, None


# The sweep this process launched: the jobs that failed before they owned a run dir (refused
# at start-up, so no summary.json says so), and, once it ended, every failed job. Hydra's
# callbacks and the task function share nothing else; one sweep per process.
_ledger: dict[str, Any] = {"failed_here": {}, "failed": [], "sweep_dir": None}


def start_ledger(sweep_dir: str | None = None) -> None:
    _ledger.update(failed_here={}, failed=[], sweep_dir=sweep_dir)


def continue_command(argv: list[str] | None = None) -> str | None:
    """The command that continues the sweep this process launched: its arguments with its
    sweep dir pinned, since the default sweep dir has a timestamp and the same command would
    start a new sweep. Run again, completed jobs are kept, interrupted ones resume and failed
    ones start again. None when no sweep was launched here."""
    sweep_dir = _ledger["sweep_dir"]
    if sweep_dir is None:
        return None
    kept = [
        arg
        for arg in (sys.argv[1:] if argv is None else argv)
        if arg not in ("-m", "--multirun") and not arg.startswith("hydra.sweep.dir=")
    ]
    pinned = f"hydra.sweep.dir={hydra_quoted(os.path.abspath(sweep_dir))}"
    return shlex.join(["python", "-m", "hymtl.train", "-m", *kept, pinned])


def record_failed_job(job_dir: Path, reason: str) -> None:
    _ledger["failed_here"][str(job_dir)] = reason


def failed_here() -> dict[str, str]:
    return dict(_ledger["failed_here"])


def record_sweep_failures(lines: list[str]) -> None:
    _ledger["failed"] = list(lines)


def sweep_failures() -> list[str]:
    """The failed jobs of the sweep that ended in this process: `hymtl.train` exits 1."""
    return list(_ledger["failed"])

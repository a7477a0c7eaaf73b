"""Who owns a run directory, and what it holds.

A run directory belongs to one run. A new run refuses a directory that already holds a run's
files (or, with overwrite=true, first moves them into DIR/replaced-<time>/; nothing is deleted);
`resume=` continues the run that is there; a sweep re-run keeps, resumes or restarts each job
by what its directory holds. Everything here reads the directory itself: it is the source of
truth, whatever process wrote it.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hymtl import UserError, display_path
from hymtl.config.schema import Config

# The names of the run dir's files live in run/files.py. Those marked F401 are not used here:
# train.py, run/callbacks.py, cli/app.py, report.py and the trackers import them from here.
from hymtl.run.files import (
    ARTIFACT_FILES,  # noqa: F401
    FINAL_ARTIFACTS,  # noqa: F401
    HYDRA_CONFIG,
    HYDRA_DIR,
    LAST_CHECKPOINT,
    LOCK_NAME,
    MLFLOW_ARTIFACTS_DIR,  # noqa: F401
    REPLACED_PREFIX,
    RUN_FILES,
    SPLIT_FILE,  # noqa: F401
    SUMMARY_FILE,
    TENSORBOARD_DIR,  # noqa: F401
)

# Keys that say how to start a run, not what the run is: never part of "the same config".
# `logger` too: a tracker mirrors a run and changes nothing it computes.
START_KEYS = ("resume", "overwrite", "logger", "resume_allow_data_change")


@dataclass
class RunState:
    """What a run directory holds. status: completed, failed, interrupted, stopped (a run that
    ended without a summary: killed, or a machine that went down) or running."""

    path: Path
    status: str
    epoch: int | None  # the epoch last.pt holds; None without a readable last.pt
    epochs: int | None  # the run's configured epochs
    config: dict | None  # the run's resolved config (last.pt's, else .hydra/config.yaml)
    error: str = ""

    def describe(self) -> str:
        where = f"last.pt at epoch {self.epoch} of {self.epochs}" if self.epoch is not None else ""
        detail = {
            "completed": "a completed run",
            "failed": f"a failed run ({self.error})" if self.error else "a failed run",
            "interrupted": "an interrupted run",
            "stopped": "a run that stopped without a summary (killed?)",
            "running": "a run that is still running",
        }[self.status]
        if self.epoch is None and self.status not in ("completed", "running"):
            where = "nothing trained yet"
        return f"{detail}{f', {where}' if where else ''}"


def present_files(run_dir: Path, names=RUN_FILES) -> list[str]:
    return [name for name in names if (Path(run_dir) / name).exists()]


class RunLock:
    """An exclusive lock on a run directory for as long as a run writes it. The kernel drops
    it when the process dies however it dies, so a killed run never leaves a stale lock."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.handle = open(self.path, "a")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise UserError(
                f"{display_path(run_dir)} is being written by another running hymtl process; "
                "wait for it, or choose another hydra.run.dir="
            ) from None

    def release(self) -> None:
        if not self.handle.closed:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def is_locked(run_dir: Path) -> bool:
    """Whether a running hymtl process holds `run_dir` (takes and drops the lock to see)."""
    if not (Path(run_dir) / LOCK_NAME).exists():
        return False
    try:
        RunLock(run_dir).release()
    except UserError:
        return True
    return False


def read_summary(run_dir: Path) -> dict | None:
    try:
        summary = json.loads((Path(run_dir) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def read_last_checkpoint(run_dir: Path) -> dict | None:
    """last.pt's contents for a look at its epoch and config: memory-mapped, so checking a
    sweep's job dirs does not read every model's weights from disk."""
    path = Path(run_dir) / LAST_CHECKPOINT
    if not path.is_file():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a torn or foreign file: there is no resumable state in it
        return None
    return checkpoint if isinstance(checkpoint, dict) and "config" in checkpoint else None


def recorded_config(run_dir: Path, checkpoint: dict | None = None) -> dict | None:
    """The run's resolved config: from last.pt (what training used), else from Hydra's
    .hydra/config.yaml (a run that failed before its first checkpoint)."""
    if checkpoint is not None and isinstance(checkpoint.get("config"), dict):
        return checkpoint["config"]
    summary = read_summary(run_dir)
    if summary and isinstance(summary.get("config"), dict):
        return summary["config"]
    path = Path(run_dir) / HYDRA_DIR / HYDRA_CONFIG
    if not path.is_file():
        return None
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(path))
        return OmegaConf.to_container(merged, resolve=True, enum_to_str=True)
    except Exception:  # an edited or foreign file: nothing to compare against
        return None


def run_state(run_dir: Path, names=RUN_FILES) -> RunState | None:
    """None if `run_dir` holds none of `names` (missing, empty, or only other things)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not present_files(run_dir, names):
        return None
    checkpoint = read_last_checkpoint(run_dir)
    config = recorded_config(run_dir, checkpoint)
    epoch = checkpoint.get("epoch") if checkpoint else None
    epochs = (config or {}).get("epochs")
    summary = read_summary(run_dir) or {}
    status = summary.get("status") or "stopped"
    if status not in ("completed", "failed", "interrupted"):
        status = "stopped"
    if is_locked(run_dir):
        status = "running"
    return RunState(run_dir, status, epoch, epochs, config, str(summary.get("error") or ""))


def comparable(config: dict | None) -> dict | None:
    if config is None:
        return None
    return {key: value for key, value in config.items() if key not in START_KEYS}


def same_config(a: dict | None, b: dict | None) -> bool:
    return a is not None and b is not None and comparable(a) == comparable(b)


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for each leaf that differs (the first few are enough to name)."""
    found = []
    for key in sorted(set(old) | set(new), key=str):
        if not prefix and key in START_KEYS:
            continue
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            found += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a} -> {b}")
    return found


def move_aside(run_dir: Path, names: list[str] | None = None) -> Path:
    """Move a run's files into RUN_DIR/replaced-<time>/ (all of them by default). Nothing is
    deleted: the earlier run stays readable there (hymtl.report skips these folders)."""
    run_dir = Path(run_dir)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    target = run_dir / f"{REPLACED_PREFIX}{stamp}"
    target.mkdir()
    for name in names if names is not None else os.listdir(run_dir):
        if name == target.name or name.startswith(REPLACED_PREFIX) or name == LOCK_NAME:
            continue
        if (run_dir / name).exists() or (run_dir / name).is_symlink():
            os.replace(run_dir / name, target / name)
    return target


def data_root_overlap(run_dir: str | Path, data_root: str | Path) -> str | None:
    """Why a run (or sweep) directory cannot go with this data root: one inside the other means
    the run's files would land among the images, and the next run would train on them."""
    run = Path(os.path.realpath(Path(run_dir).expanduser()))
    data = Path(os.path.realpath(Path(str(data_root)).expanduser()))
    if run == data or run.is_relative_to(data):
        return (
            f"the run dir {display_path(run_dir)} is inside data.root={display_path(data_root)}: "
            "its files would land among the images; choose a hydra.run.dir= (or "
            "hydra.sweep.dir=) outside the data"
        )
    if data.is_relative_to(run):
        return (
            f"data.root={display_path(data_root)} is inside the run dir {display_path(run_dir)}:"
            " the run's files would land among the images; keep the data outside the run dirs"
        )
    return None


def refusal(run_dir: Path, state: RunState) -> str:
    """The one line for a new run pointed at a directory that holds another run."""
    where = display_path(run_dir)
    if state.status == "running":
        return f"{where} holds {state.describe()}; wait for it, or choose another hydra.run.dir="
    ways = []
    if state.status == "completed":
        ways.append(f"train it further with resume={where} epochs=N")
    elif state.epoch is not None:
        ways.append(f"continue it with resume={where}")
    ways += [
        "keep it and choose another hydra.run.dir=",
        f"or add overwrite=true to move its files into {where}/{REPLACED_PREFIX}<time>/",
    ]
    return f"{where} already holds {state.describe()}; {', '.join(ways)}"


def claim_for_new_run(run_dir: Path, overwrite: bool, names=RUN_FILES) -> None:
    """Make sure a new run may write `run_dir`: refuse one that holds a run, or with
    overwrite=true move that run's files aside first. Inside a Hydra job, Hydra has already
    written .hydra/ and train.log for this very run: pass names=ARTIFACT_FILES there."""
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise UserError(
            f"{display_path(run_dir)} is a file, not a run directory; choose another hydra.run.dir="
        )
    state = run_state(run_dir, names)
    if state is None:
        return
    if state.status == "running" or not overwrite:
        raise UserError(refusal(run_dir, state))
    moved = move_aside(run_dir)
    print(f"hymtl: overwrite=true: the earlier run's files are now in {display_path(moved)}")

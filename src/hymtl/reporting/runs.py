"""The run dirs a report reads: where they are below a sweep dir, and what each one holds (its
status, config, summary.json and metrics.csv), read as it is, whatever state the run is in."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from hymtl import UserError
from hymtl.run.artifacts import read_metrics
from hymtl.run.files import MLFLOW_ARTIFACTS_DIR, REPLACED_PREFIX, RESUMED_DIR
from hymtl.run.rundir import recorded_config

RUN_MARKERS = (".hydra/config.yaml", "summary.json", "metrics.csv")
# RUN/resumed/<time>/ holds only the log and .hydra of a resume invocation, not a run
# (hymtl.run.resolvers.fresh_run_dir names it).


@dataclass
class Run:
    path: Path
    status: str  # "completed", "failed" or "incomplete" (no summary.json yet: running or killed)
    regularizer: str
    seed: int | None
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    error: str = ""
    sweep_dir: Path | None = None  # the SWEEP_DIR argument it was found under
    # hparams_search= the run was launched with (Hydra's .hydra/hydra.yaml): None for a plain
    # run or sweep job, "unknown" where no hydra.yaml says (a run made by train() from code)
    search: str | None = "unknown"


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Folders at any depth below sweep_dir (itself included) holding one of RUN_MARKERS."""
    found = set()
    for marker in RUN_MARKERS:
        for hit in Path(sweep_dir).glob(f"**/{marker}"):
            found.add(hit.parents[marker.count("/")])

    # RUN/resumed/<time>/ is a resume invocation's log, RUN/replaced-<time>/ an earlier run that
    # overwrite=true or a sweep re-run moved aside, and mlruns/ logger=mlflow's copies of run
    # files (hymtl/tracking/__init__.py): none of them is a run of its own.
    def counted(path: Path) -> bool:
        parts = path.relative_to(sweep_dir).parts
        skipped = (RESUMED_DIR, MLFLOW_ARTIFACTS_DIR)
        return not any(part in skipped or part.startswith(REPLACED_PREFIX) for part in parts)

    return sorted(path for path in found if counted(path))


def read_summary(run_dir: Path) -> tuple[dict, str]:
    """(summary.json, error): {} without one; {"status": "failed"} and why when unreadable."""
    if not (run_dir / "summary.json").is_file():
        return {}, ""
    try:
        return json.loads((run_dir / "summary.json").read_text()), ""
    except (OSError, ValueError) as exc:
        return {"status": "failed"}, f"summary.json unreadable: {exc}"


def run_status(summary: dict, error: str) -> tuple[str, str]:
    """(completed, failed or incomplete, error) of a run with this summary.json."""
    status = summary.get("status", "completed") if summary else "incomplete"
    if status == "interrupted":  # stopped by Ctrl-C/SIGTERM; resumable, not failed
        status = "incomplete"
    if status == "completed" and "best_model" not in summary:
        return "failed", error or "summary.json has no best_model"
    if status not in ("completed", "incomplete"):
        return "failed", error or summary.get("error") or f"summary.json says status={status!r}"
    return status, error


def load_run(run_dir: Path) -> Run:
    summary, error = read_summary(run_dir)
    metrics = []
    if (run_dir / "metrics.csv").is_file():
        try:
            metrics = read_metrics(run_dir / "metrics.csv")
        except (OSError, ValueError, TypeError) as exc:  # e.g. a half-written last row
            error = error or f"metrics.csv unreadable: {exc}"
    status, error = run_status(summary, error)
    config = recorded_config(run_dir) or {}
    regularizer = config.get("regularizer")
    name = regularizer.get("name", "unknown") if isinstance(regularizer, dict) else "unknown"
    run = Run(run_dir, status, str(name), config.get("seed"), config, summary, metrics, error)
    run.search = launched_search(run_dir)
    return run


def launched_search(run_dir: Path) -> str | None:
    """The hparams_search= option Hydra recorded for the run (None: not a search trial), or
    "unknown" without a readable .hydra/hydra.yaml."""
    try:
        hydra = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml")
        choices = OmegaConf.to_container(hydra.hydra.runtime.choices)
    except Exception:  # absent, unreadable or of another shape: say nothing about it
        return "unknown"
    return choices.get("hparams_search") if isinstance(choices, dict) else "unknown"


def load_sweeps(sweep_dirs: list[Path]) -> list[Run]:
    """Every run below the sweep dirs, each once, with the first sweep dir holding it as its
    sweep_dir (to tell reruns of a seed apart). A UserError when a sweep dir is missing or holds
    no run dir."""
    for sweep_dir in sweep_dirs:
        if not sweep_dir.is_dir():
            raise UserError(f"{sweep_dir} does not exist or is not a directory")
    run_dirs = sorted({run_dir for d in sweep_dirs for run_dir in find_run_dirs(d)})
    if not run_dirs:
        raise UserError(
            f"no run dirs (with .hydra/config.yaml, summary.json or metrics.csv) under "
            f"{', '.join(map(str, sweep_dirs))}"
        )
    runs = [load_run(run_dir) for run_dir in run_dirs]
    for run in runs:
        run.sweep_dir = next(d for d in sweep_dirs if run.path.is_relative_to(d))
    return runs


def config_value(run: Run, *keys: str):
    """run.config[key][key]...; None where a key is missing."""
    value = run.config
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def read_predictions(path: Path) -> tuple[list[str], list[int]] | None:
    """(image paths, 0/1 correct) of a *_predictions.csv; None when missing or unreadable."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [row["path"] for row in rows], [int(row["correct"]) for row in rows]
    except (OSError, KeyError, ValueError):
        return None

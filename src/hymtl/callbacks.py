"""Hydra callbacks registered in conf/config.yaml."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepOutcome(Callback):
    """After a sweep, in the launching process, list the jobs whose summary.json says failed.

    Reading the run dirs (rather than a list kept in memory) works whatever launcher ran the
    jobs: in-process, joblib workers, submitit locally or on SLURM. `hymtl.train.cli` turns a
    non-empty list into exit status 1."""

    failed: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        SweepOutcome.failed = []

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        for summary_path in sorted(sweep_dir.glob("**/summary.json")):
            if summary_path.stat().st_mtime < self.started:  # an earlier sweep in the same dir
                continue
            try:
                summary = json.loads(summary_path.read_text())
            except (OSError, ValueError):
                continue
            if summary.get("status") == "failed":
                SweepOutcome.failed.append(f"{summary_path.parent}: {summary.get('error')}")
        if SweepOutcome.failed:
            print(f"hymtl: {len(SweepOutcome.failed)} job(s) of the sweep failed:", file=sys.stderr)
            for line in SweepOutcome.failed:
                print(f"  {line}", file=sys.stderr)

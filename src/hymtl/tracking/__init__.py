"""Trackers: MLflow and TensorBoard mirrors of the run dir (`logger=mlflow`, `logger=tensorboard`,
`logger=[mlflow,tensorboard]`; see conf/logger/ and docs/tracking.md).

The run dir stays the source of truth. A tracker receives what the run dir receives (each
epoch's metrics row, then the final summary, plots and predictions, or the way the run ended)
and never decides anything: when one fails (a server that is down or refuses, a full disk), it
says so in one warning line and is switched off, and training goes on. Only a missing library
is an error, since the user asked for that tracker. Under torchrun only rank 0 tracks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from hymtl import UserError
from hymtl.training import distributed

log = logging.getLogger("hymtl.tracking")

EXTRA_HINT = "needs the tracking extra: pip install 'hymtl[track]'"


class Trackers:
    """The trackers a run writes to, each switched off at its first failure."""

    def __init__(self, trackers: list) -> None:
        self.active = trackers
        self.off: list[str] = []  # "NAME: why", for summary.json and the sweep's last lines

    def run_ids(self) -> dict[str, str]:
        """What last.pt keeps so that resume= continues the same tracker runs."""
        ids = {}
        for tracker in self.active:
            ids.update(tracker.run_ids())
        return ids

    def log_epoch(self, row: dict) -> None:
        self.each("log_epoch", row)

    def finish(self, status: str, run_dir: Path, summary: dict | None, reason: str = "") -> None:
        """status: completed, failed or interrupted, as summary.json says."""
        self.each("finish", status, run_dir, summary, reason)

    def each(self, method: str, *args) -> None:
        for tracker in list(self.active):
            try:
                getattr(tracker, method)(*args)
            except Exception as error:
                self.active.remove(tracker)
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                self.off.append(f"{tracker.name}: {first_line[:300]}")
                log.warning(
                    "%s stopped mirroring this run (%s); the run dir alone records the rest",
                    tracker.name,
                    first_line[:300],
                )


def open_trackers(cfg: DictConfig, run_dir: Path, resumed: dict | None) -> Trackers:
    """The trackers cfg.logger asks for, started (or, for resume=, continued) on rank 0."""
    wanted = cfg.logger.mlflow or cfg.logger.tensorboard
    if not wanted or not distributed.launched_ranks().is_main:
        return Trackers([])
    previous_ids = (resumed or {}).get("tracking") or {}
    makers = []
    if cfg.logger.mlflow:
        makers.append(mlflow_tracker_maker())
    if cfg.logger.tensorboard:
        makers.append(tensorboard_tracker_maker())
    trackers = Trackers([])
    for maker in makers:
        try:
            trackers.active.append(maker(cfg, run_dir, previous_ids, resumed))
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            trackers.off.append(f"{maker.name}: {first_line[:300]}")
            log.warning(
                "%s is off for this run (%s); the run dir records it as always",
                maker.name,
                first_line[:300],
            )
    return trackers


# The trackers' modules import their optional extra at their top: imported only once it is here.
def mlflow_tracker_maker():
    """MlflowTracker, once `mlflow` imports: a missing extra is the one tracker error that
    stops the run, before it has done any work."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise UserError(f"logger=mlflow {EXTRA_HINT}") from None
    from hymtl.tracking.mlflow_tracker import MlflowTracker

    return MlflowTracker


def tensorboard_tracker_maker():
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise UserError(f"logger=tensorboard {EXTRA_HINT}") from None
    from hymtl.tracking.tensorboard_tracker import TensorBoardTracker

    return TensorBoardTracker

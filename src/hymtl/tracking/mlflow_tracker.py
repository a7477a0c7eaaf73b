"""logger=mlflow: one MLflow run per hymtl run (hymtl/tracking/, docs/tracking.md)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

# This module is imported only once the tracking extra is known to be installed
# (hymtl.tracking.mlflow_tracker_maker).
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from omegaconf import DictConfig

from hymtl import display_path
from hymtl.config.compose import to_plain_dict
from hymtl.run.artifacts import git_state
from hymtl.run.files import CHECKPOINTS, FINAL_ARTIFACTS, MLFLOW_ARTIFACTS_DIR
from hymtl.tracking.base import final_metrics, flatten, run_context

log = logging.getLogger("hymtl.tracking")

# hymtl's run status (summary.json) -> MLflow's
MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
# A tracking server that stops answering must cost seconds, not MLflow's default minutes of
# retries, on every call; users can still set these themselves.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def check_reachable(tracking_uri: str) -> None:
    """Fail within seconds when an HTTP tracking server is down, instead of in MLflow's retries."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=5):
            pass
    except urllib.error.HTTPError:
        pass  # it answers: a proxy without /health; let MLflow's own calls decide
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionError(f"tracking server {tracking_uri} is unreachable: {reason}") from None


@contextlib.contextmanager
def store_lock(uri: str | None):
    """Hold an exclusive lock beside a local SQLite store (DB.lock) while it may be created:
    jobs of a sweep that start together would otherwise run MLflow's schema migration at the
    same time, and all but one would find a half-made store and log nothing."""
    if not uri or not uri.startswith("sqlite:///"):
        yield
        return
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


class MlflowTracker:
    """One MLflow run per hymtl run: params = the flattened config, metrics per epoch with
    step=epoch, final metrics, the run dir's final files as artifacts, status as summary.json."""

    name = "mlflow"

    def __init__(self, cfg: DictConfig, run_dir: Path, previous_ids: dict, resumed) -> None:
        for key, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        # MLflow's store set-up ("Creating initial MLflow database tables...") and alembic's
        # migrations log at INFO in their own format, in the middle of hymtl's log.
        for name in ("mlflow.store.db.utils", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        uri = cfg.logger.tracking_uri
        check_reachable(uri)
        self.log_checkpoints = cfg.logger.log_checkpoints
        with store_lock(uri):  # the first job to touch a new store creates it, alone
            self.client = MlflowClient(tracking_uri=uri)
            self.client.search_experiments(max_results=1)  # makes (migrates) the store now
            self.run_id = self.continued_run(previous_ids.get("mlflow_run_id"))
            if self.run_id is None:
                context = run_context(cfg)
                experiment_id = self.experiment_id(experiment_name(cfg, context), uri)
                run = self.client.create_run(experiment_id, run_name=display_path(run_dir))
        if self.run_id is None:
            self.run_id = run.info.run_id
            self.log_params(flatten(to_plain_dict(cfg)))
            git = git_state(Path(__file__).parent) or {}
            tags = {
                "regularizer": cfg.regularizer.name,
                "seed": cfg.seed,
                "run_dir": display_path(run_dir.resolve()),
                "sweep_dir": context.get("sweep_dir"),
                "job": context.get("job"),
                "mlflow.source.git.commit": git.get("commit"),
            }
            for key, value in tags.items():
                if value is not None:
                    self.client.set_tag(self.run_id, key, str(value))
        self.client.set_tag(self.run_id, "status", "running")
        log.info("mlflow: run %s in %s", self.run_id, uri)

    def continued_run(self, run_id: str | None) -> str | None:
        """The run last.pt names, back in RUNNING state; None when there is none to continue."""
        if run_id is None:
            return None
        try:
            self.client.get_run(run_id)
        except Exception:
            log.info("mlflow: run %s of last.pt is not in this store; starting a new one", run_id)
            return None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def experiment_id(self, name: str, uri: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        # A local store keeps its artifacts beside the database file (MLflow's default is
        # ./mlruns of whichever directory first creates the experiment).
        location = None
        if uri.startswith("sqlite:///"):
            database = Path(uri.removeprefix("sqlite:///")).resolve()
            location = (database.parent / MLFLOW_ARTIFACTS_DIR).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:
            # Another job of the same sweep may have created it a moment ago.
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def log_params(self, params: dict) -> None:
        items = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def run_ids(self) -> dict[str, str]:
        return {"mlflow_run_id": self.run_id}

    def log_epoch(self, row: dict) -> None:
        now, epoch = int(time.time() * 1000), int(row["epoch"])
        metrics = [Metric(k, float(v), now, epoch) for k, v in row.items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str, run_dir: Path, summary: dict | None, reason: str) -> None:
        if status == "completed" and summary is not None:
            for key, value in final_metrics(summary).items():
                self.client.log_metric(self.run_id, key, value)
            names = list(FINAL_ARTIFACTS)
            if self.log_checkpoints:
                names += CHECKPOINTS
            for name in names:
                if (run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(run_dir / name))
        self.client.set_tag(self.run_id, "status", status)
        if reason:
            self.client.set_tag(self.run_id, "error", reason[:5000])
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(status, "FAILED"))


def experiment_name(cfg: DictConfig, context: dict) -> str:
    """logger.experiment_name, else experiment='s name, else hparams_search='s, else the sweep
    dir (one experiment per sweep), else `hymtl`."""
    for name in (
        cfg.logger.experiment_name,
        context.get("experiment"),
        context.get("hparams_search"),
        context.get("sweep_dir"),
    ):
        if name:
            return str(name)
    return "hymtl"

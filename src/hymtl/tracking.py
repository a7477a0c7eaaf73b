"""Trackers: MLflow and TensorBoard mirrors of the run dir (`logger=mlflow`, `logger=tensorboard`,
`logger=[mlflow,tensorboard]`; see conf/logger/ and docs/tracking.md).

The run dir stays the source of truth. A tracker receives what the run dir receives (each
epoch's metrics row, then the final summary, plots and predictions, or the way the run ended)
and never decides anything: when one fails (a server that is down or refuses, a full disk), it
says so in one warning line and is switched off, and training goes on. Only a missing library
is an error, since the user asked for that tracker. Under torchrun only rank 0 tracks.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hymtl import UserError, display_path, distributed
from hymtl.rundir import FINAL_ARTIFACTS, MLFLOW_ARTIFACTS_DIR, TENSORBOARD_DIR

log = logging.getLogger("hymtl.tracking")

EXTRA_HINT = "needs the tracking extra: pip install 'hymtl[track]'"
# hymtl's run status (summary.json) -> MLflow's
MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
# A tracking server that stops answering must cost seconds, not MLflow's default minutes of
# retries, on every call; users can still set these themselves.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


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
    from hydra.core.hydra_config import HydraConfig

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


class Trackers:
    """The trackers a run writes to, each switched off at its first failure."""

    def __init__(self, trackers: list) -> None:
        self.active = trackers

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
            log.warning(
                "%s is off for this run (%s); the run dir records it as always",
                maker.name,
                first_line[:300],
            )
    return trackers


def mlflow_tracker_maker():
    """MlflowTracker, once `mlflow` imports: a missing extra is the one tracker error that
    stops the run, before it has done any work."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise UserError(f"logger=mlflow {EXTRA_HINT}") from None
    return MlflowTracker


def tensorboard_tracker_maker():
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise UserError(f"logger=tensorboard {EXTRA_HINT}") from None
    return TensorBoardTracker


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


class MlflowTracker:
    """One MLflow run per hymtl run: params = the flattened config, metrics per epoch with
    step=epoch, final metrics, the run dir's final files as artifacts, status as summary.json."""

    name = "mlflow"

    def __init__(self, cfg: DictConfig, run_dir: Path, previous_ids: dict, resumed) -> None:
        from mlflow import MlflowClient

        from hymtl.artifacts import git_state
        from hymtl.config import to_plain_dict

        for key, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        uri = cfg.logger.tracking_uri
        check_reachable(uri)
        self.client = MlflowClient(tracking_uri=uri)
        self.log_checkpoints = cfg.logger.log_checkpoints
        self.run_id = self.continued_run(previous_ids.get("mlflow_run_id"))
        if self.run_id is None:
            context = run_context(cfg)
            experiment_id = self.experiment_id(experiment_name(cfg, context), uri)
            run = self.client.create_run(experiment_id, run_name=display_path(run_dir))
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
        from mlflow.entities import Param

        items = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def run_ids(self) -> dict[str, str]:
        return {"mlflow_run_id": self.run_id}

    def log_epoch(self, row: dict) -> None:
        from mlflow.entities import Metric

        now, epoch = int(time.time() * 1000), int(row["epoch"])
        metrics = [Metric(k, float(v), now, epoch) for k, v in row.items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str, run_dir: Path, summary: dict | None, reason: str) -> None:
        if status == "completed" and summary is not None:
            for key, value in final_metrics(summary).items():
                self.client.log_metric(self.run_id, key, value)
            names = list(FINAL_ARTIFACTS)
            if self.log_checkpoints:
                names += ["best.pt", "last.pt"]
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


class TensorBoardTracker:
    """RUN_DIR/tensorboard: scalars per epoch; at the end the config and final metrics for the
    HPARAMS tab, and the run's plots as images. TensorBoard reads folders recursively, so
    `tensorboard --logdir SWEEP_DIR` shows every job of a sweep."""

    name = "tensorboard"

    def __init__(self, cfg: DictConfig, run_dir: Path, previous_ids: dict, resumed) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from hymtl.config import to_plain_dict

        # A resumed run redoes the epochs after last.pt: purge_step drops their old points.
        purge_step = resumed["epoch"] + 1 if resumed else None
        self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=purge_step)
        config = flatten(to_plain_dict(cfg))
        self.hparams = {key: hparam_value(value) for key, value in config.items()}

    def run_ids(self) -> dict[str, str]:
        return {}

    def log_epoch(self, row: dict) -> None:
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def finish(self, status: str, run_dir: Path, summary: dict | None, reason: str) -> None:
        try:
            if status == "completed" and summary is not None:
                self.write_hparams(final_metrics(summary))
                self.write_images(run_dir)
        finally:
            self.writer.close()

    def write_hparams(self, metrics: dict[str, float]) -> None:
        """Written into this run's own event file (SummaryWriter.add_hparams would open a new
        folder per call): one run, one entry in the HPARAMS tab."""
        from torch.utils.tensorboard.summary import hparams

        tags = {f"hparam/{key}": value for key, value in metrics.items()}
        for summary in hparams(self.hparams, tags):
            self.writer.file_writer.add_summary(summary)
        for tag, value in tags.items():
            self.writer.add_scalar(tag, value)

    def write_images(self, run_dir: Path) -> None:
        import numpy as np
        from PIL import Image

        for name in ("curves.png", "confusion_matrix.png", "predictions.png", "errors.png"):
            if (run_dir / name).is_file():
                with Image.open(run_dir / name) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(name.removesuffix(".png"), pixels, dataformats="HWC")


def hparam_value(value: Any) -> Any:
    """TensorBoard's hparams take numbers, strings and booleans; lists and None become text."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)

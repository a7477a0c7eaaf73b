"""logger=tensorboard: event files in RUN_DIR/tensorboard (see hymtl/tracking/__init__.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# This module is imported only once the tracking extra is known to be installed
# (hymtl.tracking.tensorboard_tracker_maker).
import numpy as np
from omegaconf import DictConfig
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from hymtl.config.compose import to_plain_dict
from hymtl.run.files import TENSORBOARD_DIR, TRACKED_PLOTS
from hymtl.tracking.base import final_metrics, flatten


class TensorBoardTracker:
    """RUN_DIR/tensorboard: scalars per epoch; at the end the config and final metrics for the
    HPARAMS tab, and the run's plots as images. TensorBoard reads folders recursively, so
    `tensorboard --logdir SWEEP_DIR` shows every job of a sweep."""

    name = "tensorboard"

    def __init__(self, cfg: DictConfig, run_dir: Path, previous_ids: dict, resumed) -> None:
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
        tags = {f"hparam/{key}": value for key, value in metrics.items()}
        for summary in hparams(self.hparams, tags):
            self.writer.file_writer.add_summary(summary)
        for tag, value in tags.items():
            self.writer.add_scalar(tag, value)

    def write_images(self, run_dir: Path) -> None:
        for name in TRACKED_PLOTS:
            if (run_dir / name).is_file():
                with Image.open(run_dir / name) as image:
                    pixels = np.asarray(image.convert("RGB"))
                self.writer.add_image(name.removesuffix(".png"), pixels, dataformats="HWC")


def hparam_value(value: Any) -> Any:
    """TensorBoard's hparams take numbers, strings and booleans; lists and None become text."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)

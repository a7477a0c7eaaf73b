"""A trained run's metrics again, from its checkpoint alone: the core of `hymtl evaluate`."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from hymtl.data import (
    ImageListDataset,
    list_class_files,
    make_loader,
    scan_usable,
    warn_skipped,
)
from hymtl.errors import UserError, display_path
from hymtl.inference.loading import load_trained_model
from hymtl.run.metrics import classification_metrics
from hymtl.training.calibration import calibration_metrics
from hymtl.training.loop import evaluate


def evaluate_checkpoint(
    checkpoint: str,
    root: str,
    split: str = "val",
    device: str = "auto",
    batch_size: int = 32,
    precision="fp32",
) -> dict:
    """The report of `checkpoint` on ROOT/SPLIT (or ROOT itself, a plain folder of class
    folders): the run's transform, classes and rules for unusable files, in `precision`."""
    loaded = load_trained_model(checkpoint, device, precision)
    folder = Path(root).expanduser() / split
    if not folder.is_dir():
        folder = Path(root).expanduser()  # a plain folder of class folders
    classes, files = list_class_files(folder)
    if classes != loaded.classes:
        raise UserError(
            f"{display_path(folder)} has classes {classes}, the checkpoint was trained on "
            f"{loaded.classes}"
        )
    samples, skipped = scan_usable(files, classes, loaded.min_colors, split)
    warn_skipped(skipped)
    if not samples:
        raise UserError(f"no usable image in {display_path(folder)}")
    dataset = ImageListDataset(samples, classes, loaded.transform)
    loader = make_loader(dataset, batch_size, 0, False, 0, loaded.device.type == "cuda")
    result = evaluate(
        loaded.model,
        loader,
        criterion=nn.CrossEntropyLoss(),
        device=loaded.device,
        autocast=loaded.autocast,
        channels_last=loaded.channels_last,
        desc=f"evaluating {split}",
    )
    metrics = classification_metrics(result["targets"], result["preds"], classes)
    metrics["calibration"] = calibration_metrics(result["probabilities"], result["targets"])
    return {
        "checkpoint": str(checkpoint),
        "folder": str(folder),
        "precision": loaded.precision,
        "loss": result["loss"],
        **metrics,
    }

"""How an exported file agrees with the checkpoint it was exported from, checked by `hymtl
export` before the file is put in place.

The check runs both models (fp32, CPU) on images the run used, in this order of choice:
  1. the images the run evaluated: split.csv beside the checkpoint, roles `select` (the val
     images, val_predictions.csv's) and `test` (evaluation=holdout or kfold), resolved under the
     run's data.root; a split.csv whose labels are not the checkpoint's classes is another run's
     and is not used;
  2. without split.csv (a checkpoint copied out of its run dir, or one from before split.csv),
     or when none of its images is here: every image in DATA_ROOT/val;
  3. when neither is here: RANDOM_INPUTS seeded random tensors.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import torch

from hymtl.data import walk_files
from hymtl.errors import display_path
from hymtl.inference.loading import LoadedModel, load_exported_model
from hymtl.inference.predicting import predict
from hymtl.run.files import SPLIT_FILE

# The warning is export's own: users filter and tests catch it under that name.
log = logging.getLogger("hymtl.export")
RANDOM_INPUTS = 8  # tensors of the check when none of the run's images is here
EVALUATED_ROLES = ("select", "test")  # split.csv roles: the images the run evaluated on
SPLIT_COLUMNS = {"path", "label", "role"}


def data_root(loaded: LoadedModel) -> Path | None:
    """The run's data.root (from the checkpoint's config), or None where it has none."""
    root = loaded.config["data"].get("root")
    return Path(root).expanduser() if isinstance(root, str) and root else None


def split_rows(split: Path) -> list[dict]:
    """split.csv's rows, or [] when it is not a readable regular file with its columns (only
    regular files are opened: a FIFO would block)."""
    if not os.path.isfile(split):
        return []
    try:
        with open(split, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return rows if rows and SPLIT_COLUMNS <= set(rows[0]) else []


def evaluated_images(loaded: LoadedModel, checkpoint: str) -> tuple[list[Path], str]:
    """The images the run evaluated on that are here (split.csv beside the checkpoint, roles
    select and test) and what they are, or ([], "")."""
    root = data_root(loaded)
    split = Path(checkpoint).expanduser().parent / SPLIT_FILE
    rows = split_rows(split) if root is not None else []
    if any(row["label"] not in loaded.classes for row in rows):
        return [], ""  # labels the checkpoint does not know: another run's split.csv
    listed = [root / row["path"] for row in rows if row["role"] in EVALUATED_ROLES]
    files = [file for file in listed if os.path.isfile(file)]
    if not files:
        return [], ""
    where = f"{display_path(split)} (roles {', '.join(EVALUATED_ROLES)}) under {display_path(root)}"
    return files, f"images the run evaluated, listed in {where}"


def val_images(loaded: LoadedModel) -> tuple[list[Path], str]:
    """The images in DATA_ROOT/val (the checkpoint's config) and what they are, or ([], "")
    when that folder is not here."""
    root = data_root(loaded)
    if root is None or not (root / "val").is_dir():
        return [], ""
    folder = root / "val"
    return [Path(file) for file in walk_files(folder)], f"val images in {display_path(folder)}"


def probabilities_on_images(
    loaded: LoadedModel, exported: LoadedModel, checkpoint: str
) -> tuple[torch.Tensor, torch.Tensor, str] | None:
    """Both models' probabilities on the run's images (the module's order of choice) and what
    the inputs were, or None when none of them is here and usable."""
    for files, what in (evaluated_images(loaded, checkpoint), val_images(loaded)):
        if not files:
            continue
        rows_a, _ = predict(loaded, files)
        rows_b, _ = predict(exported, files)
        if rows_a:
            names = [f"p_{name}" for name in loaded.classes]
            probs_a = torch.tensor([[row[name] for name in names] for row in rows_a])
            probs_b = torch.tensor([[row[name] for name in names] for row in rows_b])
            return probs_a, probs_b, f"{len(rows_a)} {what}"
    return None


@torch.inference_mode()
def probabilities_on_random_tensors(
    loaded: LoadedModel, exported: LoadedModel
) -> tuple[torch.Tensor, torch.Tensor, str]:
    size = loaded.config["data"]["image_size"]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(RANDOM_INPUTS, 3, size, size, generator=generator)
    probs_a = loaded.model(images).float().softmax(1)
    probs_b = exported.model(images).float().softmax(1)
    inputs = f"{RANDOM_INPUTS} random normal tensors (seed 0): none of the run's images is here"
    return probs_a, probs_b, inputs


def verify_export(loaded: LoadedModel, checkpoint: str, path: Path | str) -> dict:
    """How the exported file at `path` agrees with the checkpoint's model (fp32, CPU), on the
    run's images where they are (module docstring), else on seeded random tensors. Labels that
    differ are one warning line (not an error: the file is still written)."""
    exported = load_exported_model(Path(path), "cpu")
    found = probabilities_on_images(loaded, exported, checkpoint)
    probs_a, probs_b, inputs = found or probabilities_on_random_tensors(loaded, exported)
    labels_a, labels_b = probs_a.argmax(1), probs_b.argmax(1)
    n, agreeing = len(labels_a), int((labels_a == labels_b).sum())
    result = {
        "inputs": inputs,
        "precision": "fp32",
        "n": n,
        "labels_agreeing": agreeing,
        "max_abs_probability_difference": float((probs_a - probs_b).abs().max()),
    }
    if agreeing != n:
        log.warning(
            "%d of %d predicted labels differ between %s and its export in fp32 (max |difference "
            "in probability| %.2g)",
            n - agreeing,
            n,
            display_path(checkpoint),
            result["max_abs_probability_difference"],
        )
    return result

"""Predicting with a loaded model (a checkpoint's or an export's): the core `hymtl predict`
writes out, and `hymtl export` checks each export with."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from hymtl.data import check_image, not_regular_reason, refuse_decompression_bombs, walk_files
from hymtl.errors import UserError, display_path
from hymtl.inference.loading import LoadedModel


def list_inputs(inputs: str | Path) -> list[Path]:
    """`inputs=` as the files to predict: an image file, or every file under a folder (listed
    like training's: hidden names ignored, each real directory once). A FIFO, device or socket
    is refused in one line without being opened (a FIFO would block)."""
    path = Path(inputs).expanduser()
    if path.is_dir():
        return [Path(file) for file in walk_files(path)]
    special = not_regular_reason(str(path))
    if special:
        raise UserError(
            f"inputs={display_path(inputs)} is {special}; give an image file or a folder of images"
        )
    if path.is_file():
        return [path]
    raise UserError(
        f"inputs={display_path(inputs)} does not exist; give an image file or a folder of images"
    )


def probability_rows(loaded: LoadedModel, batch: list[tuple[Path, object]]) -> list[dict]:
    """One row per (file, decoded image) of `batch`: path, predicted, probability, p_<class>...
    (the columns of a run's val_predictions.csv, without what only labelled images have)."""
    images = torch.stack([loaded.transform(image) for _, image in batch]).to(loaded.device)
    if loaded.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with loaded.autocast():
        probabilities = loaded.model(images).float().softmax(1).cpu()
    rows = []
    for (file, _), probs in zip(batch, probabilities):
        best = int(probs.argmax())
        row = {
            "path": str(file),
            "predicted": loaded.classes[best],
            "probability": float(probs[best]),
        }
        row.update({f"p_{name}": float(p) for name, p in zip(loaded.classes, probs)})
        rows.append(row)
    return rows


@torch.inference_mode()
def predict(loaded: LoadedModel, files: list[Path], batch_size: int = 32) -> tuple[list, list]:
    """One row per usable file (path, predicted, probability, p_<class>...), and the skipped
    files with their reasons (training's rules: check_image)."""
    rows, skipped, pending = [], [], []
    refuse_decompression_bombs()
    for file in files:
        reason, image = check_image(str(file), loaded.min_colors)
        if reason:
            skipped.append((str(file), reason))
            continue
        pending.append((file, image))
        if len(pending) == batch_size:
            rows += probability_rows(loaded, pending)
            pending.clear()
    if pending:
        rows += probability_rows(loaded, pending)
    return rows, skipped


def write_predictions(rows: list[dict], path: Path | str, model: Path | str) -> None:
    """predictions.csv in UTF-8, its last column the model file that made it; file names that
    are not UTF-8 get `\\xNN` escapes."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "model"])
        writer.writeheader()
        shown = display_path(model)
        writer.writerows({**row, "path": display_path(row["path"]), "model": shown} for row in rows)

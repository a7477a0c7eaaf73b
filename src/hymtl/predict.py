"""Predict classes for new images with a trained run's checkpoint.

    hymtl predict ckpt=RUN_DIR/best.pt inputs=IMAGE_OR_FOLDER [out=DIR] [device=auto]
                  [precision=fp32|bf16|fp16|auto]
    hymtl predict -m ckpt=RUN_A/best.pt,RUN_B/best.pt inputs=IMAGE_OR_FOLDER   (one job each)

Writes OUT/predictions.csv (file, predicted class, probability, one column per class) and
OUT/predictions.png (a grid of the first images with their predictions). OUT defaults to a new
folder per call, RUN_DIR/predict/YYYYMMDD-HHMMSS-ffffff/ (beside the checkpoint), so a call
never replaces an earlier one's files; an out= folder that already holds them is refused unless
overwrite=true, and a run's own folder always (its predictions.png is the run's). A Hydra app
(hymtl.cli.app): keys and types in hymtl.config.schema's PredictConfig, `--help` lists them.
Folders are listed like training's (hidden names ignored, each real directory once), and files
training would skip (undecodable, or placeholders with fewer than the run's data.min_colors
colours) are skipped with one warning naming them.

precision=fp32 (the default) runs the model in fp32: exact, repeatable, and what an exported
file computes; auto is the run's own precision (bf16 autocast on bf16-capable hardware, as in
training). The precision used is in the grid's title and on the line printed at the end.
"""

from __future__ import annotations

import csv
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from hymtl import UserError, display_path
from hymtl.cli.app import check_outputs, run_command, write_outputs
from hymtl.data import (
    check_image,
    open_rgb,
    refuse_decompression_bombs,
    walk_files,
    warn_skipped,
)
from hymtl.inference.loading import load_trained_model
from hymtl.training.plots import make_prediction_grid

USAGE = (
    "hymtl predict ckpt=RUN_DIR/best.pt inputs=IMAGE_OR_FOLDER [out=DIR] [device=auto] "
    "[precision=fp32]"
)
FILES = ("predictions.csv", "predictions.png")


def list_inputs(inputs: str | Path) -> list[Path]:
    path = Path(inputs).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return [Path(file) for file in walk_files(path)]
    raise UserError(
        f"inputs={display_path(inputs)} does not exist; give an image file or a folder of images"
    )


@torch.inference_mode()
def predict(loaded, files: list[Path], batch_size: int = 32) -> tuple[list[dict], list]:
    """One row per usable file (file, predicted, probability, p_<class>...), and the skipped."""
    rows, skipped, pending = [], [], []

    def flush():
        images = torch.stack([loaded.transform(image) for _, image in pending]).to(loaded.device)
        if loaded.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with loaded.autocast():
            probabilities = loaded.model(images).float().softmax(1).cpu()
        for (file, _), probs in zip(pending, probabilities):
            best = int(probs.argmax())
            row = {
                "file": str(file),
                "predicted": loaded.classes[best],
                "probability": float(probs[best]),
            }
            row.update({f"p_{name}": float(p) for name, p in zip(loaded.classes, probs)})
            rows.append(row)
        pending.clear()

    refuse_decompression_bombs()
    for file in files:
        reason, image = check_image(str(file), loaded.min_colors)
        if reason:
            skipped.append((str(file), reason))
            continue
        pending.append((file, image))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return rows, skipped


def write_predictions(rows: list[dict], path: Path | str) -> None:
    """predictions.csv in UTF-8; file names that are not UTF-8 get `\\xNN` escapes."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "file": display_path(row["file"])} for row in rows)


def new_output_folder(parent: Path) -> Path:
    """PARENT/YYYYMMDD-HHMMSS-ffffff/, made now and by this call only (like evaluate's reports:
    microseconds keep two calls apart, and a name already taken is never reused)."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        while True:
            folder = parent / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"cannot write in {display_path(parent)}: {reason}") from None


def run(cfg: DictConfig) -> None:
    """One prediction job: a checkpoint over the inputs, into OUT (UserError: refused)."""
    if cfg.batch_size < 1:
        raise UserError(f"batch_size={cfg.batch_size} must be >= 1")
    ckpt = Path(cfg.ckpt).expanduser()
    given = Path(cfg.out).expanduser() if cfg.out else None
    if given is not None and given.exists() and not given.is_dir():
        raise UserError(f"out={display_path(given)} is a file; give a folder")
    out = given or ckpt.parent / "predict" / "YYYYMMDD-HHMMSS-ffffff"  # named when written
    # Refused before anything is read: a run's own folder, files there, a folder not writable.
    hint = f" (without out=, a new folder per call in {display_path(ckpt.parent / 'predict')}/)"
    check_outputs([out / name for name in FILES], cfg.overwrite, given, (ckpt,), hint)
    loaded = load_trained_model(cfg.ckpt, cfg.device, cfg.precision)
    rows, skipped = predict(loaded, list_inputs(cfg.inputs), cfg.batch_size)
    warn_skipped(skipped)
    if not rows:
        raise UserError(f"no usable image under inputs={display_path(cfg.inputs)}")
    if not cfg.out:
        out = new_output_folder(out.parent)
    csv_path, grid_path = (out / name for name in FILES)
    shown = rows[:16]

    def draw(path: str) -> None:
        make_prediction_grid(
            [np.asarray(open_rgb(row["file"])) / 255.0 for row in shown],
            [None] * len(shown),  # true labels unknown: nothing is marked right or wrong
            [row["predicted"] for row in shown],
            [row["probability"] for row in shown],
            path,
            # matplotlib cannot draw non-UTF-8
            f"predictions of {display_path(cfg.ckpt)} ({loaded.precision})",
        )

    write_outputs(
        {csv_path: lambda path: write_predictions(rows, path), grid_path: draw}, cfg.overwrite
    )
    print(
        f"{len(rows)} predictions -> {display_path(csv_path)}, grid -> {display_path(grid_path)} "
        f"(precision {loaded.precision})"
    )


def main(argv: list[str] | None = None) -> int:
    """`hymtl predict ARGV` (default: the command line); returns the exit status."""
    return run_command("predict", run, USAGE, argv)


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()

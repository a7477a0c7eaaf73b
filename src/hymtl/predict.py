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

from pathlib import Path
from typing import NoReturn

import numpy as np
from omegaconf import DictConfig

from hymtl.cli.app import check_outputs, new_output_folder, run_command, write_outputs
from hymtl.cli.process_exit import run_as_process
from hymtl.data import open_rgb, warn_skipped
from hymtl.errors import UserError, display_path
from hymtl.inference.loading import load_trained_model
from hymtl.inference.predicting import list_inputs, predict, write_predictions
from hymtl.training.prediction_grid import make_prediction_grid

USAGE = (
    "hymtl predict ckpt=RUN_DIR/best.pt inputs=IMAGE_OR_FOLDER [out=DIR] [device=auto] "
    "[precision=fp32]"
)
FILES = ("predictions.csv", "predictions.png")


def output_folder(cfg: DictConfig) -> tuple[Path, Path | None]:
    """(OUT, the out= given or None), refused in one line before anything is read: a run's own
    folder, files there without overwrite=true, a folder that cannot be written. Without out=,
    OUT is a placeholder for the new folder made when the files are written."""
    ckpt = Path(cfg.ckpt).expanduser()
    given = Path(cfg.out).expanduser() if cfg.out else None
    if given is not None and given.exists() and not given.is_dir():
        raise UserError(f"out={display_path(given)} is a file; give a folder")
    out = given or ckpt.parent / "predict" / "YYYYMMDD-HHMMSS-ffffff"  # named when written
    hint = f" (without out=, a new folder per call in {display_path(ckpt.parent / 'predict')}/)"
    check_outputs([out / name for name in FILES], cfg.overwrite, given, (ckpt,), hint)
    return out, given


def grid_writer(rows: list[dict], title: str):
    """predictions.png's writer: the first 16 images with their predicted class."""
    shown = rows[:16]

    def draw(path: str) -> None:
        make_prediction_grid(
            [np.asarray(open_rgb(row["path"])) / 255.0 for row in shown],
            [None] * len(shown),  # true labels unknown: nothing is marked right or wrong
            [row["predicted"] for row in shown],
            [row["probability"] for row in shown],
            path,
            title,
        )

    return draw


def run(cfg: DictConfig) -> None:
    """One prediction job: a checkpoint over the inputs, into OUT (UserError: refused)."""
    if cfg.batch_size < 1:
        raise UserError(f"batch_size={cfg.batch_size} must be >= 1")
    out, given = output_folder(cfg)
    loaded = load_trained_model(cfg.ckpt, cfg.device, cfg.precision)
    rows, skipped = predict(loaded, list_inputs(cfg.inputs), cfg.batch_size)
    warn_skipped(skipped)
    if not rows:
        raise UserError(f"no usable image under inputs={display_path(cfg.inputs)}")
    if given is None:
        out = new_output_folder(out.parent)
    csv_path, grid_path = (out / name for name in FILES)
    # matplotlib cannot draw non-UTF-8
    title = f"predictions of {display_path(cfg.ckpt)} ({loaded.precision})"
    writers = {
        csv_path: lambda path: write_predictions(rows, path, Path(cfg.ckpt).expanduser().resolve()),
        grid_path: grid_writer(rows, title),
    }
    write_outputs(writers, cfg.overwrite)
    print(
        f"{len(rows)} predictions -> {display_path(csv_path)}, grid -> {display_path(grid_path)} "
        f"(precision {loaded.precision})"
    )


def main(argv: list[str] | None = None) -> int:
    """`hymtl predict ARGV` (default: the command line); returns the exit status."""
    return run_command("predict", run, USAGE, argv)


def cli() -> NoReturn:
    run_as_process(main)  # the whole process: cli.process_exit


if __name__ == "__main__":
    cli()

"""No name and no class count can break the pictures, and no picture can break a trained run:
labels are plain text (a class folder `$x_$` is a name, not mathtext; a matplotlibrc asking for
LaTeX is ignored), the confusion matrix stays bounded past 30 classes, and write_plots draws
each picture on its own, a failure being one warning while the run completes."""

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.text import Text
from PIL import Image

import hymtl.run.artifacts  # noqa: F401
import hymtl.training.plots
from hymtl.run.artifacts import write_plots
from hymtl.train import train
from hymtl.training.calibration import calibration_metrics
from hymtl.training.plots import (
    MAX_FIGURE_INCHES,
    most_confused_pairs,
    plot_confusion_matrix,
    plot_curves,
    plot_reliability,
)
from hymtl.training.prediction_grid import make_prediction_grid

from .conftest import TINY, compose_config

# `$x_$` and `$\notacommand$` make mathtext raise; `$x^2$` would be drawn as a formula.
DOLLAR_NAMES = ["$x^2$", "$x_$", r"$\notacommand$", "a$b", "price: $5"]
PNG = b"\x89PNG\r\n\x1a\n"
PICTURES = ["curves.png", "confusion_matrix.png", "predictions.png", "errors.png"]


def rows_for(epochs: int) -> list[dict]:
    return [
        dict(
            epoch=e,
            train_loss=1 / e,
            train_penalty=0.0,
            train_acc=0.5,
            val_loss=1 / e,
            val_acc=0.5 + e / 100,
        )
        for e in range(1, epochs + 1)
    ]


def texts_of(figure) -> list[Text]:
    return [text for text in figure.findobj(Text) if text.get_text()]


def assert_written(grid, *expected: str) -> None:
    """The prediction grid (PIL, no mathtext anywhere) writes each expected name as given."""
    shown = "\n".join(text for text, _ in [*grid.captions, grid.title])
    for name in expected:
        assert name in shown


def assert_plain(figure, *expected: str) -> None:
    """Every text of the figure is drawn as written, and each expected name appears in one."""
    texts = texts_of(figure)
    assert all(not text.get_parse_math() and not text.get_usetex() for text in texts)
    shown = "\n".join(text.get_text() for text in texts)
    for name in expected:
        assert name in shown


@pytest.mark.parametrize("name", DOLLAR_NAMES)
def test_dollar_names_are_drawn_as_plain_text(tmp_path, name):
    classes = [name, "bees"]
    figure = plot_confusion_matrix([[3, 1], [0, 4]], classes, tmp_path / "cm.png", f"val {name}")
    assert_plain(figure, name, f"val {name}")
    images = [np.zeros((16, 16, 3))] * 2
    grid = make_prediction_grid(
        images, classes, ["bees", name], [0.5, 0.6], tmp_path / "grid.png", name
    )
    assert_written(grid, name, f"pred {name}", f"true {name}")
    grid = make_prediction_grid(images, [None, None], classes, [0.5, 0.6], tmp_path / "new.png")
    assert_written(grid, f"{name} (0.50)")
    assert_plain(plot_curves(rows_for(2), tmp_path / "curves.png", name), name)
    calibration = calibration_metrics([[0.9, 0.1], [0.2, 0.8]], [0, 1])
    assert_plain(plot_reliability(calibration, tmp_path / "cal.png", name), name)
    for picture in ("cm.png", "grid.png", "new.png", "curves.png", "cal.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG


def test_a_matplotlibrc_asking_for_latex_is_ignored(tmp_path):
    with matplotlib.rc_context({"text.usetex": True}):  # no LaTeX needed: it is never used
        figure = plot_confusion_matrix([[1, 0], [0, 1]], ["$x_$", "50%_#&"], tmp_path / "cm.png")
    assert_plain(figure, "$x_$", "50%_#&")
    assert matplotlib.rcParams["text.usetex"] is False  # the context ended, nothing leaked


def test_thirty_classes_keep_a_number_in_every_cell(tmp_path):
    n = 30
    matrix = np.eye(n, dtype=int) * 3
    figure = plot_confusion_matrix(matrix.tolist(), [f"c{i}" for i in range(n)], tmp_path / "a")
    [ax] = figure.axes
    assert len(ax.texts) == n * n
    assert max(figure.get_size_inches()) <= MAX_FIGURE_INCHES


@pytest.mark.parametrize("n", [40, 300])
def test_many_classes_colour_only_bounded_size_and_top_pairs(tmp_path, n):
    rng = np.random.default_rng(n)
    matrix = np.diag(rng.integers(3, 9, n))
    matrix[5, 7], matrix[2, 9] = 11, 4  # the two most confused pairs
    classes = [f"class {i} with a long name, {'x' * 40}" for i in range(n)]
    path = tmp_path / "confusion_matrix.png"
    figure = plot_confusion_matrix(matrix.tolist(), classes, path, "val, best epoch 1 of 1")
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as image:
        assert max(image.size) <= MAX_FIGURE_INCHES * 100  # dpi 100, whatever n is
    matrix_ax = figure.axes[0]
    assert len(matrix_ax.texts) == 0  # no per-cell numbers
    listing = "\n".join(text.get_text() for ax in figure.axes for text in ax.texts)
    assert "the 2 most confused pairs" in listing
    first, second = [line for line in listing.splitlines() if " → " in line][1:3]
    assert first.split()[0] == "11" and "class 5 " in first and "class 7 " in first
    assert second.split()[0] == "4" and "class 2 " in second and "class 9 " in second
    assert f"{n} classes: colour only" in matrix_ax.get_title()


def test_most_confused_pairs_largest_first_and_never_the_diagonal():
    matrix = [[9, 2, 0], [5, 9, 1], [2, 0, 9]]
    assert most_confused_pairs(matrix) == [(5, 1, 0), (2, 0, 1), (2, 2, 0), (1, 1, 2)]
    assert most_confused_pairs(matrix, 2) == [(5, 1, 0), (2, 0, 1)]
    assert most_confused_pairs(np.eye(3, dtype=int)) == []


def test_grid_with_forty_long_class_names(tmp_path):
    names = [f"{i}: {'a very long class name ' * 4}" for i in range(40)]
    count = 16
    images = [np.random.default_rng(i).random((24, 24, 3)) for i in range(count)]
    path = tmp_path / "grid.png"
    grid = make_prediction_grid(
        images, names[:count], names[-count:], [0.4] * count, path, "val predictions"
    )
    assert path.read_bytes()[:8] == PNG
    captions = [text for text, _ in grid.captions]
    assert len(captions) == count and all(
        len(line) < 60 for c in captions for line in c.split("\n")
    )


def fake_run(n_classes: int = 3, n_images: int = 9):
    """What train.finish hands write_plots, for a run that is already trained."""
    classes = [f"class {i}" for i in range(n_classes)]
    targets = [i % n_classes for i in range(n_images)]
    preds = [(t + (i % 4 == 0)) % n_classes for i, t in enumerate(targets)]
    probabilities = [
        [0.8 if k == p else 0.2 / (n_classes - 1) for k in range(n_classes)] for p in preds
    ]
    matrix = np.zeros((n_classes, n_classes), dtype=int)
    for t, p in zip(targets, preds):
        matrix[t, p] += 1
    accuracy = float(np.trace(matrix) / n_images)
    summary = {
        "classes": classes,
        "best_epoch": 2,
        "best_model": {"accuracy": accuracy, "confusion_matrix": matrix.tolist()},
        "calibration": {"set": "val", **calibration_metrics(probabilities, targets)},
    }
    dataset = [(torch.rand(3, 16, 16), t) for t in targets]
    result = {"targets": targets, "preds": preds, "probs": [0.8] * n_images}
    cfg = SimpleNamespace(
        data=SimpleNamespace(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]), grid_images=4
    )
    return summary, rows_for(2), ("val", dataset, result), cfg


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_write_plots_draws_every_picture(tmp_path, caplog):
    summary, rows, reported, cfg = fake_run()
    with caplog.at_level(logging.WARNING, logger="hymtl.run.artifacts"):
        write_plots(summary, rows, reported, cfg, tmp_path, "resnet18 · $x_$ · seed=0")
    for picture in PICTURES + ["calibration.png"]:
        assert (tmp_path / picture).read_bytes()[:8] == PNG
    assert summary["plots_failed"] == [] and warnings_of(caplog) == []


def test_a_picture_that_cannot_be_written_is_one_warning(tmp_path, caplog):
    summary, rows, reported, cfg = fake_run()
    (tmp_path / "curves.png").mkdir()  # where the curves should go
    with caplog.at_level(logging.WARNING, logger="hymtl.run.artifacts"):
        write_plots(summary, rows, reported, cfg, tmp_path, "run")
    [warning] = warnings_of(caplog)
    assert warning.startswith("could not draw curves.png (IsADirectoryError: ")
    assert [entry["file"] for entry in summary["plots_failed"]] == ["curves.png"]
    for picture in PICTURES[1:] + ["calibration.png"]:
        assert (tmp_path / picture).read_bytes()[:8] == PNG


def test_a_picture_that_raises_is_one_warning_on_one_line(tmp_path, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("\nmathtext says:\n  x_\n   ^\n")

    monkeypatch.setattr(hymtl.training.plots, "plot_confusion_matrix", broken)
    monkeypatch.setattr(hymtl.training.plots, "plot_reliability", broken)
    summary, rows, reported, cfg = fake_run()
    with caplog.at_level(logging.WARNING, logger="hymtl.run.artifacts"):
        write_plots(summary, rows, reported, cfg, tmp_path, "run")
    assert warnings_of(caplog) == [
        f"could not draw {name} (ValueError: mathtext says: x_ ^); the run completes without it"
        for name in ("confusion_matrix.png", "calibration.png")
    ]
    assert [entry["file"] for entry in summary["plots_failed"]] == [
        "confusion_matrix.png",
        "calibration.png",
    ]
    for picture in ("curves.png", "predictions.png", "errors.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG


def test_ctrl_c_while_drawing_is_not_swallowed(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hymtl.training.plots, "plot_curves", interrupted)
    summary, rows, reported, cfg = fake_run()
    with pytest.raises(KeyboardInterrupt):
        write_plots(summary, rows, reported, cfg, tmp_path, "run")


def rename_class(root: Path, old: str, new: str) -> None:
    for split in ("train", "val"):
        os.rename(root / split / old, root / split / new)


def train_tiny(image_root: Path, run_dir: Path) -> dict:
    overrides = ["data=imagefolder", f"data.root={image_root}", "epochs=1"]
    return train(compose_config(TINY + overrides), run_dir)


@pytest.mark.slow
def test_class_folder_named_like_mathtext_trains_and_completes(image_root, tmp_path):
    rename_class(image_root, "ants", "$x_$")
    run_dir = tmp_path / "run"
    summary = train_tiny(image_root, run_dir)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == summary["status"] == "completed"
    assert on_disk["classes"] == ["$x_$", "bees"]
    assert on_disk["plots_failed"] == []
    for picture in PICTURES + ["calibration.png"]:
        assert (run_dir / picture).read_bytes()[:8] == PNG


@pytest.mark.slow
def test_a_picture_that_fails_leaves_the_run_completed(image_root, tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no room for this picture")

    monkeypatch.setattr(hymtl.training.plots, "plot_confusion_matrix", broken)
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="hymtl.run.artifacts"):
        train_tiny(image_root, run_dir)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["status"] == "completed"
    assert on_disk["plots_failed"] == [
        {"file": "confusion_matrix.png", "reason": "RuntimeError: no room for this picture"}
    ]
    assert "could not draw confusion_matrix.png (RuntimeError" in caplog.text
    assert not (run_dir / "confusion_matrix.png").exists()
    for picture in ("curves.png", "predictions.png", "errors.png", "calibration.png"):
        assert (run_dir / picture).read_bytes()[:8] == PNG

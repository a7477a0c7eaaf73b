"""The pictures say what the numbers say: nothing hidden, nothing overlapping, one model."""

import csv

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import hymtl.run.artifacts  # noqa: F401
import hymtl.training.plots
from hymtl.train import train
from hymtl.training.plots import make_prediction_grid, plot_curves

from .conftest import TINY, compose_config


def renderer_of(figure):
    """A drawn Agg canvas for a figure built without pyplot (layout applied)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def text_boxes_overlapping_images(figure) -> list[str]:
    renderer = renderer_of(figure)
    image_axes = [ax for ax in figure.axes if ax.images]
    texts = [(ax.title, ax) for ax in image_axes]
    if figure._suptitle is not None:
        texts.append((figure._suptitle, None))
    found = []
    for text, owner in texts:
        box = text.get_window_extent(renderer)
        for ax in image_axes:
            if ax is not owner and box.overlaps(ax.get_window_extent(renderer)):
                found.append(text.get_text())
    return found


@pytest.mark.parametrize("count", [1, 5, 8, 16])
def test_grid_captions_never_overlap_images(tmp_path, count):
    images = [np.random.default_rng(i).random((64, 48, 3)) for i in range(count)]
    figure = make_prediction_grid(
        images,
        ["ants"] * count,
        ["bees", "ants"] * (count // 2) + ["bees"] * (count % 2),
        [0.97] * count,
        tmp_path / "grid.png",
        "val predictions, best epoch 3 of 25 (val acc 0.9477) · a long run name · seed=0\n"
        "16 of 153 images, sampled per class and right/wrong: 2 wrong shown",
    )
    assert text_boxes_overlapping_images(figure) == []


def rows_for(epochs):
    return [
        dict(
            epoch=e,
            train_loss=1 / e,
            train_penalty=0.1,
            train_acc=0.5 + e / 100,
            val_loss=1.2 / e,
            val_acc=0.6 + e / 100,
        )
        for e in epochs
    ]


@pytest.mark.parametrize("epochs", [[1], [1, 2, 3, 4, 5, 6, 7]])
def test_curves_show_every_epoch_on_whole_ticks_and_legends_hide_nothing(tmp_path, epochs):
    figure = plot_curves(rows_for(epochs), tmp_path / "curves.png", "title")
    renderer = renderer_of(figure)
    ax_loss, ax_acc = figure.axes[:2]
    for ax in (ax_loss, ax_acc):
        data_lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 1 or epochs == [1]]
        assert all(line.get_marker() not in (None, "None", "") for line in data_lines[:2])
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        legend = ax.get_legend().get_window_extent(renderer)
        for other in figure.axes:
            assert not legend.overlaps(other.get_window_extent(renderer))


def test_comparison_shows_one_epoch_runs(tmp_path):
    from hymtl.report import Run, plot_comparison

    runs = [
        Run(tmp_path / name, "completed", name, 0, metrics=rows_for([1])) for name in ("none", "l1")
    ]
    figure = plot_comparison(runs, tmp_path / "comparison.png")
    ax_acc = figure.axes[0]
    points = [line for line in ax_acc.get_lines() if len(line.get_xdata()) == 1]
    assert len(points) == 2 and all(line.get_marker() == "o" for line in points)
    ticks = [t for t in ax_acc.get_xticks() if ax_acc.get_xlim()[0] <= t <= ax_acc.get_xlim()[1]]
    assert ticks == [1.0]
    renderer = renderer_of(figure)
    legend = ax_acc.get_legend().get_window_extent(renderer)
    assert not any(legend.overlaps(ax.get_window_extent(renderer)) for ax in figure.axes)


@pytest.mark.slow
def test_every_per_image_picture_comes_from_the_best_epoch(image_root, tmp_path, monkeypatch):
    drawn = []
    real = hymtl.training.plots.write_prediction_grid

    def record(val_dataset, classes, eval_result, *args, **kwargs):
        drawn.append(eval_result["preds"])
        return real(val_dataset, classes, eval_result, *args, **kwargs)

    monkeypatch.setattr(hymtl.training.plots, "write_prediction_grid", record)
    run_dir = tmp_path / "run"
    overrides = ["data=imagefolder", f"data.root={image_root}", "epochs=3", "optimizer.lr=0.05"]
    summary = train(compose_config(TINY + overrides), run_dir)
    with open(run_dir / "val_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    classes = summary["classes"]
    best_preds = [classes.index(row["predicted"]) for row in rows]
    assert drawn == [best_preds, best_preds]  # the grid and the error gallery
    matrix = summary["best_model"]["confusion_matrix"]
    assert sum(matrix[i][i] for i in range(2)) == sum(int(row["correct"]) for row in rows)

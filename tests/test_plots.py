"""The pictures say what the numbers say: nothing hidden, nothing overlapping, one model."""

import csv

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

import hymtl.run.artifacts  # noqa: F401
import hymtl.training.prediction_grid
from hymtl.train import train
from hymtl.training.plots import plot_curves
from hymtl.training.prediction_grid import FRAME_PX, GRID_CELL_PX, RED, make_prediction_grid

from .conftest import TINY, compose_config


def renderer_of(figure):
    """A drawn Agg canvas for a figure built without pyplot (layout applied)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def texts_over_images(picture) -> list[str]:
    """The texts (captions, title) whose ink covers any pixel of an image or its red frame:
    the canvas holds the images and frames, white everywhere else."""
    found = []
    for text, (left, top, right, bottom) in [*picture.captions, picture.title]:
        if (picture.canvas[max(0, top) : bottom, max(0, left) : right] != 255).any():
            found.append(text)
    return found


def assert_saved_whole(picture, path) -> None:
    """The file is the picture, and every text lies inside it (no title cut at an edge)."""
    with Image.open(path) as saved:
        assert (np.asarray(saved.convert("RGB")) == picture.pixels).all()
    height, width = picture.pixels.shape[:2]
    for _, (left, top, right, bottom) in [*picture.captions, picture.title]:
        assert 0 <= left < right <= width and 0 <= top < bottom <= height


@pytest.mark.parametrize("count", [1, 5, 8, 16])
@pytest.mark.parametrize("size", [(64, 48), (224, 224), (600, 900)])
def test_grid_captions_never_overlap_images(tmp_path, count, size):
    images = [np.random.default_rng(i).random((*size, 3)) for i in range(count)]
    picture = make_prediction_grid(
        images,
        ["ants"] * count,
        ["bees", "ants"] * (count // 2) + ["bees"] * (count % 2),
        [0.97] * count,
        tmp_path / "grid.png",
        "val predictions, best epoch 3 of 25 (val acc 0.9477) · a long run name · seed=0\n"
        "16 of 153 images, sampled per class and right/wrong: 2 wrong shown",
    )
    assert texts_over_images(picture) == []
    assert_saved_whole(picture, tmp_path / "grid.png")
    captions = [text for text, _ in picture.captions]
    assert len(captions) == count and captions[0].startswith("✗ pred bees (0.97)\ntrue ants")
    assert all(caption.startswith("✓ pred ants") for caption in captions[1::2])


def test_grid_shows_each_image_whole_and_frames_only_the_wrong_ones(tmp_path):
    """Each image's pixels land in the picture unchanged (224 px: the default image size) or
    shrunk to fit with their aspect kept; a red frame surrounds the wrong ones only."""
    rng = np.random.default_rng(0)
    small, large = rng.random((224, 224, 3)), rng.random((900, 450, 3))
    picture = make_prediction_grid(
        [small, large], ["ants", "ants"], ["ants", "bees"], [0.9, 0.8], tmp_path / "g.png"
    )
    canvas = picture.canvas
    pixels = (small * 255).round().astype(np.uint8)
    rows, columns = np.nonzero((canvas == pixels[0, 0]).all(axis=2))
    top, left = next(
        (r, c) for r, c in zip(rows, columns) if (canvas[r, c : c + 224] == pixels[0]).all()
    )
    assert (canvas[top : top + 224, left : left + 224] == pixels).all()
    assert (canvas[top - 3 : top, left : left + 224] == 255).all()  # right: no frame
    red = (canvas == RED).all(axis=2)
    framed_rows = np.nonzero(red.any(axis=1))[0]
    framed_columns = np.nonzero(red.any(axis=0))[0]
    assert framed_rows.size and framed_columns.min() > left + 224  # the second image only
    inner_height = framed_rows.max() - framed_rows.min() + 1 - 2 * FRAME_PX
    inner_width = framed_columns.max() - framed_columns.min() + 1 - 2 * FRAME_PX
    assert (inner_height, inner_width) == (GRID_CELL_PX, GRID_CELL_PX // 2)
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_no_title_is_cut_and_an_empty_grid_says_why(tmp_path):
    """One image under a title wider than it: the picture widens to the title. No images
    (a model with no errors): a picture that says so, not an empty or missing file."""
    title = "val errors, val, best epoch 2 of 3 (chosen on val) (acc 0.6928) · resnet18 · seed=0"
    one = make_prediction_grid(
        [np.zeros((8, 8, 3))], ["ants"], ["bees"], [0.9], tmp_path / "one.png", title
    )
    assert one.pixels.shape[1] > GRID_CELL_PX + 2 * 10  # wider than one image's cell
    assert one.title[0] == title and texts_over_images(one) == []
    assert_saved_whole(one, tmp_path / "one.png")
    empty = make_prediction_grid([], [], [], [], tmp_path / "none.png", "val errors")
    assert empty.title[0] == "val errors\n\nno images to show (no errors)"
    assert empty.captions == []
    assert_saved_whole(empty, tmp_path / "none.png")


def test_a_class_name_with_a_newline_stays_on_its_caption_line(tmp_path):
    picture = make_prediction_grid(
        [np.zeros((224, 224, 3))], ["two\nlines"], ["tab\there"], [0.6], tmp_path / "g.png"
    )
    assert picture.captions[0][0] == "✗ pred tab here (0.60)\ntrue two lines"
    assert texts_over_images(picture) == []


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
    real = hymtl.training.prediction_grid.write_prediction_grid

    def record(val_dataset, classes, eval_result, *args, **kwargs):
        drawn.append(eval_result["preds"])
        return real(val_dataset, classes, eval_result, *args, **kwargs)

    monkeypatch.setattr(hymtl.training.prediction_grid, "write_prediction_grid", record)
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

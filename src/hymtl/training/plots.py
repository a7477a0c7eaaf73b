"""Pictures people would rather look at than read: curves, confusion matrix, prediction grid."""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from sklearn.metrics import ConfusionMatrixDisplay

# Figures are built with matplotlib's object API (Figure, not pyplot): they are only ever
# saved to files, so no backend, no global figure registry and nothing to close.

# Labels carry user text (class names, folder and run names): a class folder named `$x_$` is a
# name, not a formula. Every picture is built and saved with mathtext and LaTeX off, whatever a
# matplotlibrc says, so no name can make a picture fail after training.
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}

# The confusion matrix past this many classes: colour only (no per-cell numbers), and the most
# confused pairs listed beside it; past MAX_NAMED_CLASSES, class indices on the axes.
MAX_NUMBERED_CLASSES = 30
MAX_NAMED_CLASSES = 60
MAX_FIGURE_INCHES = 16.0
TOP_CONFUSED_PAIRS = 20
LABEL_CHARS = 32  # class names longer than this are cut (with …) in tick labels and captions
# Photos barely shrink with more zlib effort; level 1 saves them ~2x faster than the default 6.
PNG_SAVE = {"pil_kwargs": {"compress_level": 1}}


def plain_text(draw):
    """Build and save the figure under PLAIN_TEXT (the figure's texts keep it when redrawn)."""

    @functools.wraps(draw)
    def drawn_as_plain_text(*args, **kwargs):
        with matplotlib.rc_context(PLAIN_TEXT):
            return draw(*args, **kwargs)

    return drawn_as_plain_text


def short(name: str, limit: int = LABEL_CHARS) -> str:
    """A label that fits: `name`, or its first `limit` - 1 characters and an ellipsis."""
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


@plain_text
def plot_curves(
    rows: list[dict], path: Path, title: str = "", best_epoch: int | None = None
) -> Figure:
    """Loss (data loss and penalty) and accuracy per epoch, train and val. Markers on every
    point (a 1-epoch run is one point), whole-number epoch ticks, legends below the axes so
    they never cover a point."""
    epochs = [row["epoch"] for row in rows]
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train (data loss)")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    handles = []
    if any(r["train_penalty"] for r in rows):
        ax_pen = ax_loss.twinx()
        handles = ax_pen.plot(
            epochs, [r["train_penalty"] for r in rows], "s--", color="gray", label="penalty"
        )
        ax_pen.set_ylabel("penalty (gray, dashed)")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    legend_below(ax_loss, extra=handles)
    ax_acc.plot(epochs, [r["train_acc"] for r in rows], "o-", label="train")
    ax_acc.plot(epochs, [r["val_acc"] for r in rows], "o-", label="val")
    # The epoch the run selected (by early_stopping.metric); else the best val accuracy.
    chosen = [row for row in rows if row["epoch"] == best_epoch]
    best = chosen[0] if chosen else max(rows, key=lambda r: r["val_acc"])
    best_label = f"selected (epoch {best['epoch']})"
    ax_acc.axvline(best["epoch"], color="gray", lw=0.8, ls=":", label=best_label)
    ax_acc.set(
        xlabel="epoch",
        ylabel="accuracy",
        title=f"accuracy (selected epoch: val {best['val_acc']:.4f})",
    )
    legend_below(ax_acc)
    for ax in (ax_loss, ax_acc):
        whole_epochs(ax, epochs)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100, **PNG_SAVE)
    return fig


def whole_epochs(ax, epochs: list[int]) -> None:
    """Epoch ticks at whole numbers only, with a margin so a single epoch is not at the edge."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if epochs:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)


def legend_below(ax, extra=()) -> None:
    handles, labels = ax.get_legend_handles_labels()
    handles += list(extra)
    labels += [handle.get_label() for handle in extra]
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=len(handles),
        frameon=False,
        fontsize=9,
    )


def most_confused_pairs(matrix, count: int = TOP_CONFUSED_PAIRS) -> list[tuple[int, int, int]]:
    """The `count` largest off-diagonal cells as (images, true index, predicted index), largest
    first (ties in row-major order); cells with no image are left out."""
    matrix = np.asarray(matrix)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:count]
    rows, cols = np.unravel_index(flat, off.shape)
    return [(int(off[t, p]), int(t), int(p)) for t, p in zip(rows, cols) if off[t, p] > 0]


@plain_text
def plot_confusion_matrix(
    matrix: list[list[int]], classes: list[str], path: Path, title: str = ""
) -> Figure:
    """Counts per (true, predicted) class. Up to MAX_NUMBERED_CLASSES classes, a number in
    every cell; past that, colour only in a figure of bounded size, with the most confused
    pairs listed beside it (a 300-class matrix of numbers is neither readable nor quick)."""
    matrix = np.asarray(matrix)
    n = len(classes)
    title = title or "confusion matrix (val)"
    if n > MAX_NUMBERED_CLASSES:
        return plot_large_confusion_matrix(matrix, classes, path, title)
    size = min(MAX_FIGURE_INCHES, 4 + 0.4 * n), min(MAX_FIGURE_INCHES, 3.5 + 0.4 * n)
    fig = Figure(figsize=size)
    ax = fig.subplots()
    ConfusionMatrixDisplay(matrix, display_labels=[short(name) for name in classes]).plot(
        ax=ax, colorbar=False, xticks_rotation="vertical" if n > 8 else "horizontal"
    )
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, **PNG_SAVE)
    return fig


def plot_large_confusion_matrix(matrix: np.ndarray, classes: list[str], path: Path, title: str):
    n = len(classes)
    named = n <= MAX_NAMED_CLASSES
    fig = Figure(figsize=(MAX_FIGURE_INCHES, 0.7 * MAX_FIGURE_INCHES), layout="constrained")
    ax, ax_pairs = fig.subplots(1, 2, width_ratios=[3, 2])
    shown = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
    fig.colorbar(shown, ax=ax, shrink=0.6, label="images")
    if named:
        ax.set_xticks(range(n), [short(name, 20) for name in classes], rotation=90, fontsize=6)
        ax.set_yticks(range(n), [short(name, 20) for name in classes], fontsize=6)
        ax.set(xlabel="predicted label", ylabel="true label")
    else:  # names would be a black smear: indices into summary.json's `classes`
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="predicted class (index)", ylabel="true class (index)")
    ax.set_title(f"{title}\n{n} classes: colour only, no per-cell numbers", fontsize=9)
    ax_pairs.axis("off")
    pairs = most_confused_pairs(matrix)

    def label(index: int) -> str:
        return short(classes[index], 24) if named else f"[{index}] {short(classes[index], 20)}"

    if pairs:
        lines = [f"{count:>5}  {label(t)} → {label(p)}" for count, t, p in pairs]
        listing = f"the {len(pairs)} most confused pairs\n(images: true → predicted)\n\n"
        listing += "\n".join(lines)
    else:
        listing = "no confusions: every image is on the diagonal"
    ax_pairs.text(
        0,
        1,
        listing,
        va="top",
        ha="left",
        family="monospace",
        fontsize=8,
        transform=ax_pairs.transAxes,
    )
    fig.savefig(path, dpi=100, **PNG_SAVE)
    return fig


@plain_text
def plot_reliability(calibration: dict, path: Path, title: str = "") -> Figure:
    """Reliability diagram from calibration.calibration_metrics: per confidence bin, a bar of
    the bin's accuracy against the diagonal of perfect calibration, the gap between accuracy
    and the bin's mean confidence shaded red; below it, the number of images per bin. ECE,
    Brier, NLL, accuracy and n in the axes title. Empty bins are drawn as nothing."""
    filled = [b for b in calibration["reliability"] if b["count"]]
    lows = [b["low"] for b in filled]
    widths = [b["high"] - b["low"] for b in filled]
    accuracy = [b["accuracy"] for b in filled]
    confidence = [b["confidence"] for b in filled]
    fig = Figure(figsize=(7.5, 6.6), layout="constrained")
    ax, ax_count = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfect calibration")
    ax.bar(
        lows,
        accuracy,
        widths,
        align="edge",
        color="tab:blue",
        edgecolor="black",
        lw=0.6,
        label="accuracy",
    )
    ax.bar(
        lows,
        [abs(c - a) for a, c in zip(accuracy, confidence)],
        widths,
        bottom=[min(a, c) for a, c in zip(accuracy, confidence)],
        align="edge",
        color="tab:red",
        alpha=0.3,
        hatch="//",
        edgecolor="tab:red",
        lw=0.6,
        label="gap to mean confidence",
    )
    # The numbers go in the axes title, where no bar can be under them.
    summary = (
        f"ECE {calibration['ece']:.4f} · Brier {calibration['brier']:.4f} · "
        f"NLL {calibration['nll']:.4f}\naccuracy {calibration['accuracy']:.4f} · "
        f"n {calibration['n']} · {calibration['bins']} bins"
    )
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy (top-1)")
    ax.set_title(summary, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax_count.bar(lows, [b["count"] for b in filled], widths, align="edge", color="gray")
    ax_count.set(xlabel="top-1 confidence", ylabel="images")
    ax_count.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True, min_n_ticks=1))
    if title:
        fig.suptitle(title, fontsize=9)  # user text: a `$` is a dollar (PLAIN_TEXT)
    fig.savefig(path, dpi=100, **PNG_SAVE)
    return fig


def choose_grid_indices(targets: list[int], preds: list[int], count: int) -> list[int]:
    """`count` val images whose mix matches the model's: each (true class, right or wrong) cell
    gets its share of the grid (largest remainders first), picked evenly over the cell, so the
    grid's share of errors is the model's and no class is left out by file order."""
    n = len(targets)
    if count >= n:
        return list(range(n))
    cells: dict[tuple[int, bool], list[int]] = {}
    for index, (target, pred) in enumerate(zip(targets, preds)):
        cells.setdefault((target, target == pred), []).append(index)
    quota = {cell: count * len(members) / n for cell, members in cells.items()}
    take = {cell: int(share) for cell, share in quota.items()}
    by_remainder = sorted(cells, key=lambda cell: (take[cell] - quota[cell], cell))
    for cell in by_remainder[: count - sum(take.values())]:
        take[cell] += 1
    picked = []
    for cell, members in cells.items():
        step = len(members) / take[cell] if take[cell] else 0
        picked += [members[int(step * k + step / 2)] for k in range(take[cell])]
    return sorted(picked)


def grid_caption(targets: list[int], preds: list[int], indices: list[int]) -> str:
    """How the grid was chosen, and how it compares with the whole split."""
    errors = sum(t != p for t, p in zip(targets, preds))
    shown = sum(targets[i] != preds[i] for i in indices)
    return (
        f"{len(indices)} of {len(targets)} images, sampled per class and right/wrong: "
        f"{shown} wrong shown; the model has {errors} errors in {len(targets)}"
    )


# The prediction grid is one picture of pixels with the captions drawn over it, not an axes per
# image: at 16 images that is ~5x faster to draw and save (docs/performance.md, "Start-up").
GRID_DPI = 72
GRID_CELL_PX = 224  # an image's box: the default image_size, so val images are not resampled
GRID_GAP_PX = 10
GRID_CAPTION_PX = 28  # two 9-point caption lines above each box
GRID_TITLE_LINE_PX = 14  # a 10-point title line
FRAME_PX = 3  # the red frame of a wrong prediction
RED = (214, 39, 40)


def fitted(image: np.ndarray, size: int) -> np.ndarray:
    """An HxWx3 float image in [0, 1] as uint8, shrunk (aspect kept) to fit a size x size box."""
    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if max(pixels.shape[:2]) <= size:
        return pixels
    picture = Image.fromarray(pixels)
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(picture)


@plain_text
def make_prediction_grid(
    images: list[np.ndarray],
    true_labels: list[str | None],
    pred_labels: list[str],
    probabilities: list[float],
    path: Path,
    title: str = "",
) -> Figure:
    """Images (HxWx3 floats in [0, 1]) captioned 'pred (p) / true', four to a row; errors in
    red with a red frame. A true label of None shows the prediction alone."""
    count = len(images)
    if count == 0:  # e.g. no errors: say so rather than leave an empty or missing file
        fig = Figure(figsize=(4, 1.5))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no images to show (no errors)", ha="center", va="center")
        fig.suptitle(title, fontsize=8)
        fig.savefig(path, dpi=72, **PNG_SAVE)
        return fig
    title = title or "val predictions (red = wrong)"
    cols = min(4, count)
    header = 10 + GRID_TITLE_LINE_PX * (title.count("\n") + 1)
    cell_width = GRID_CELL_PX + GRID_GAP_PX
    cell_height = GRID_CAPTION_PX + GRID_CELL_PX + GRID_GAP_PX
    width = GRID_GAP_PX + cols * cell_width
    height = header + -(-count // cols) * cell_height
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    fig = Figure(figsize=(width / GRID_DPI, height / GRID_DPI), dpi=GRID_DPI)
    for k, (image, true, pred, prob) in enumerate(
        zip(images, true_labels, pred_labels, probabilities)
    ):
        row, col = divmod(k, cols)
        box_left = GRID_GAP_PX + col * cell_width
        box_top = header + row * cell_height + GRID_CAPTION_PX
        pixels = fitted(image, GRID_CELL_PX)
        h, w = pixels.shape[:2]
        left, top = box_left + (GRID_CELL_PX - w) // 2, box_top + (GRID_CELL_PX - h) // 2
        wrong = true is not None and true != pred
        if wrong:
            canvas[top - FRAME_PX : top + h + FRAME_PX, left - FRAME_PX : left + w + FRAME_PX] = RED
        canvas[top : top + h, left : left + w] = pixels
        if true is None:  # new images: no truth to mark against
            caption, color = f"{short(pred)} ({prob:.2f})", "black"
        else:
            mark, color = ("✗", "red") if wrong else ("✓", "green")
            caption = f"{mark} pred {short(pred)} ({prob:.2f})\ntrue {short(true)}"
        x, y = (box_left + GRID_CELL_PX / 2) / width, 1 - (box_top - FRAME_PX - 2) / height
        fig.text(x, y, caption, ha="center", va="bottom", fontsize=9, color=color)
    fig.figimage(canvas, origin="upper")
    fig.suptitle(title, fontsize=10, y=1 - 5 / height, va="top")
    fig.savefig(path, dpi=GRID_DPI, **PNG_SAVE)
    return fig


def most_confident_errors(targets, preds, probs, count: int) -> list[int]:
    wrong = [i for i, (t, p) in enumerate(zip(targets, preds)) if t != p]
    return sorted(wrong, key=lambda i: -probs[i])[:count]


def write_prediction_grid(
    val_dataset, classes, eval_result, count, mean, std, path, title, errors_only=False
) -> None:
    """Draw `count` val images with their predictions: a sample whose mix matches the model's
    (choose_grid_indices; the caption says how it was chosen), or (errors_only) the most
    confidently wrong ones."""
    targets, preds = eval_result["targets"], eval_result["preds"]
    if errors_only:
        indices = most_confident_errors(targets, preds, eval_result["probs"], count)
        errors = sum(t != p for t, p in zip(targets, preds))
        title = f"{title}\nthe {len(indices)} most confidently wrong of {errors} errors"
    else:
        indices = choose_grid_indices(targets, preds, count)
        title = f"{title}\n{grid_caption(targets, preds, indices)}"
    mean, std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    images = [
        (val_dataset[i][0] * std + mean).clamp(0, 1).permute(1, 2, 0).numpy() for i in indices
    ]
    make_prediction_grid(
        images,
        [classes[targets[i]] for i in indices],
        [classes[preds[i]] for i in indices],
        [eval_result["probs"][i] for i in indices],
        path,
        title,
    )

"""Pictures people would rather look at than read: curves, confusion matrix, reliability
diagram (the prediction grid: prediction_grid.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
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

"""Pictures people would rather look at than read: curves, confusion matrix, prediction grid."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def plot_curves(rows: list[dict], path: Path, title: str = "") -> None:
    """Loss (data loss and penalty) and accuracy per epoch, train and val."""
    epochs = [row["epoch"] for row in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train (data loss)")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], "o-", label="val")
    if any(r["train_penalty"] for r in rows):
        ax_pen = ax_loss.twinx()
        ax_pen.plot(epochs, [r["train_penalty"] for r in rows], "--", color="gray", label="penalty")
        ax_pen.set_ylabel("penalty (gray, dashed)")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_loss.legend(loc="upper left")
    ax_acc.plot(epochs, [r["train_acc"] for r in rows], "o-", label="train")
    ax_acc.plot(epochs, [r["val_acc"] for r in rows], "o-", label="val")
    best = max(rows, key=lambda r: r["val_acc"])
    ax_acc.axvline(best["epoch"], color="gray", lw=0.8, ls=":")
    ax_acc.set(
        xlabel="epoch", ylabel="accuracy", title=f"accuracy (best val {best['val_acc']:.4f})"
    )
    ax_acc.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion_matrix(
    matrix: list[list[int]], classes: list[str], path: Path, title: str = ""
) -> None:
    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(classes), 3.5 + 0.4 * len(classes)))
    ConfusionMatrixDisplay(np.array(matrix), display_labels=classes).plot(ax=ax, colorbar=False)
    ax.set_title(title or "confusion matrix (val)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def choose_grid_indices(targets: list[int], preds: list[int], count: int) -> list[int]:
    """Up to half the grid for errors (they are what people look for), the rest correct ones,
    spread evenly over the split so the picks do not depend on file order alone."""
    wrong = [i for i, (t, p) in enumerate(zip(targets, preds)) if t != p]
    right = [i for i, (t, p) in enumerate(zip(targets, preds)) if t == p]
    take_wrong = wrong[: max(count // 2, count - len(right))]
    take_right_n = min(len(right), count - len(take_wrong))
    step = len(right) / take_right_n if take_right_n else 1
    take_right = [right[int(k * step)] for k in range(take_right_n)]
    return sorted(take_wrong + take_right)


def make_prediction_grid(
    images: list[np.ndarray],
    true_labels: list[str | None],
    pred_labels: list[str],
    probabilities: list[float],
    path: Path,
    title: str = "",
) -> None:
    """Images (HxWx3 floats in [0, 1]) titled 'pred (p) / true'; errors in red with a red frame.
    A true label of None shows the prediction alone."""
    count = len(images)
    if count == 0:  # e.g. no errors: say so rather than leave an empty or missing file
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no images to show (no errors)", ha="center", va="center")
        fig.suptitle(title, fontsize=8)
        fig.savefig(path, dpi=72)
        plt.close(fig)
        return
    cols = min(4, max(count, 1))
    rows = max(1, -(-count // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, true, pred, prob in zip(
        axes.flat, images, true_labels, pred_labels, probabilities
    ):
        ax.imshow(image)
        if true is None:  # new images: no truth to mark against
            ax.set_title(f"{pred} ({prob:.2f})", fontsize=9)
            continue
        wrong = true != pred
        color = "red" if wrong else "green"
        ax.set_title(
            f"{'✗' if wrong else '✓'} pred {pred} ({prob:.2f})\ntrue {true}",
            color=color,
            fontsize=9,
        )
        if wrong:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("red")
                spine.set_linewidth(3)
    fig.suptitle(title or "val predictions (red = wrong)")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def most_confident_errors(targets, preds, probs, count: int) -> list[int]:
    wrong = [i for i, (t, p) in enumerate(zip(targets, preds)) if t != p]
    return sorted(wrong, key=lambda i: -probs[i])[:count]


def write_prediction_grid(
    val_dataset, classes, eval_result, count, mean, std, path, title, errors_only=False
) -> None:
    """Draw `count` val images with their predictions: a mix chosen by choose_grid_indices, or
    (errors_only) the most confidently wrong ones."""
    targets, preds = eval_result["targets"], eval_result["preds"]
    if errors_only:
        indices = most_confident_errors(targets, preds, eval_result["probs"], count)
    else:
        indices = choose_grid_indices(targets, preds, count)
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

"""The prediction grid: images with their predicted (and true) class, errors framed in red.

One picture of pixels with the captions written into it by PIL, not a matplotlib figure: no
text layout, compositing or RGBA encoding to wait for at the end of a run (docs/performance.md,
"Start-up")."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from hymtl.training.plots import PNG_SAVE, short


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


GRID_CELL_PX = 224  # an image's box: the default image_size, so val images are not resampled
GRID_GAP_PX = 10
GRID_CAPTION_PX = 28  # two 9-px caption lines above each box
GRID_TITLE_LINE_PX = 14  # a 10-px title line
CAPTION_FONT_PX, TITLE_FONT_PX, LINE_SPACING_PX = 9, 10, 2
FRAME_PX = 3  # the red frame of a wrong prediction
RED = (214, 39, 40)
TEXT_COLORS = {"wrong": (255, 0, 0), "right": (0, 128, 0), "plain": (0, 0, 0)}
DEJAVU_SANS = Path("fonts", "ttf", "DejaVuSans.ttf")  # under matplotlib's data path
Box = tuple[int, int, int, int]  # left, top, right, bottom (pixels, right and bottom excluded)


@dataclass
class GridPicture:
    """The prediction grid as saved: `canvas` is the images and their frames on white (before
    any text), `pixels` the saved picture; `captions` and `title` are each text with the box
    its ink covers."""

    canvas: np.ndarray
    pixels: np.ndarray
    captions: list[tuple[str, Box]]
    title: tuple[str, Box]


@functools.cache
def grid_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans, the font of the other pictures (matplotlib's own copy; it has ✓ and ✗)."""
    try:
        return ImageFont.truetype(str(Path(matplotlib.get_data_path(), DEJAVU_SANS)), size)
    except OSError:  # a matplotlib without its fonts: Pillow's own
        return ImageFont.load_default(size)


def fitted(image: np.ndarray, size: int) -> np.ndarray:
    """An HxWx3 float image in [0, 1] as uint8, shrunk (aspect kept) to fit a size x size box."""
    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if max(pixels.shape[:2]) <= size:
        return pixels
    picture = Image.fromarray(pixels)
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(picture)


def label(name: str) -> str:
    """A class name on one line (a folder name may hold a newline or a tab), cut to fit."""
    return short(" ".join(str(name).split()))


def text_size(text: str, size: int) -> tuple[int, int]:
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox(
        (0, 0), text, font=grid_font(size), align="center", spacing=LINE_SPACING_PX
    )
    return math.ceil(right), math.ceil(bottom)


def write_text(draw, text: str, center_x: float, top: int, size: int, color) -> Box:
    """`text` centred on center_x below `top`; the box its ink covers."""
    left = round(center_x - text_size(text, size)[0] / 2)
    font = grid_font(size)
    where = {"xy": (left, top), "text": text, "font": font, "align": "center"}
    draw.multiline_text(**where, fill=color, spacing=LINE_SPACING_PX)
    return tuple(int(v) for v in draw.multiline_textbbox(**where, spacing=LINE_SPACING_PX))


def make_prediction_grid(
    images: list[np.ndarray],
    true_labels: list[str | None],
    pred_labels: list[str],
    probabilities: list[float],
    path: Path,
    title: str = "",
) -> GridPicture:
    """Images (HxWx3 floats in [0, 1]) captioned 'pred (p) / true', four to a row; errors in
    red with a red frame. A true label of None shows the prediction alone. The picture is as
    wide as its title, so no title is cut."""
    count = len(images)
    title = title or "val predictions (red = wrong)"
    if count == 0:  # e.g. no errors: say so rather than leave an empty or missing file
        title += "\n\nno images to show (no errors)"
    cols = min(4, count)
    header = 10 + GRID_TITLE_LINE_PX * (title.count("\n") + 1)
    cell_width = GRID_CELL_PX + GRID_GAP_PX
    cell_height = GRID_CAPTION_PX + GRID_CELL_PX + GRID_GAP_PX
    width = max(GRID_GAP_PX + cols * cell_width, text_size(title, TITLE_FONT_PX)[0] + 20)
    height = header + -(-count // max(cols, 1)) * cell_height
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    captions = []
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
            caption, color = f"{label(pred)} ({prob:.2f})", "plain"
        else:
            mark, color = ("✗", "wrong") if wrong else ("✓", "right")
            caption = f"{mark} pred {label(pred)} ({prob:.2f})\ntrue {label(true)}"
        captions.append((caption, color, box_left + GRID_CELL_PX / 2, box_top - GRID_CAPTION_PX))
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    boxes = [
        (caption, write_text(draw, caption, x, top, CAPTION_FONT_PX, TEXT_COLORS[color]))
        for caption, color, x, top in captions
    ]
    title_box = write_text(draw, title, width / 2, 5, TITLE_FONT_PX, TEXT_COLORS["plain"])
    picture.save(path, format="PNG", compress_level=PNG_SAVE["pil_kwargs"]["compress_level"])
    return GridPicture(canvas, np.asarray(picture), boxes, (title, title_box))


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

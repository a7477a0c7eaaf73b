"""Tiny generated image folders for tests, smoke checks and scripts/chaos.py (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_class_images(
    folder: Path, classes=("ants", "bees"), per_class=6, size=40, seed=0
) -> None:
    """Separable toy classes: each class is dominated by its own colour channel, plus noise
    (so every image has far more than `data.min_colors` colours, like a photo)."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        (Path(folder) / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3))
            pixels[..., index % 3] += 180
            Image.fromarray(pixels.astype(np.uint8)).save(Path(folder) / name / f"{name}_{i}.jpg")


def make_toy_image_folder(root: Path, train_per_class: int = 12, val_per_class: int = 6) -> Path:
    """ROOT/{train,val}/{ants,bees}/*.jpg"""
    write_class_images(Path(root) / "train", per_class=train_per_class, seed=1)
    write_class_images(Path(root) / "val", per_class=val_per_class, seed=2)
    return Path(root)

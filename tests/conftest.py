"""Shared helpers: tiny generated image folders and a composed config, no network, no ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from PIL import Image

import hymtl.train  # noqa: F401  (registers the schema in Hydra's ConfigStore)

# Small images keep a ResNet-18 epoch on CPU to a second or two.
TINY = [
    "data.image_size=32",
    "data.resize_size=36",
    "num_workers=0",
    "model.pretrained=false",
    "precision=fp32",
]


def compose_config(overrides: list[str] | None = None):
    with initialize_config_module("hymtl.conf", version_base="1.3"):
        return compose("config", overrides=overrides or [])


def write_class_images(
    folder: Path, classes=("ants", "bees"), per_class=6, size=40, seed=0
) -> None:
    """Separable toy classes: each class is dominated by its own colour channel, plus noise
    (so every image has far more than `min_colors` colours, like a photo)."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3))
            pixels[..., index % 3] += 180
            Image.fromarray(pixels.astype(np.uint8)).save(folder / name / f"{name}_{i}.jpg")


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """ROOT/{train,val}/{ants,bees}/*.jpg"""
    root = tmp_path / "images"
    write_class_images(root / "train", per_class=12, seed=1)
    write_class_images(root / "val", per_class=6, seed=2)
    return root

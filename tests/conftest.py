"""Shared helpers: tiny generated image folders and a composed config, no network, no ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

import hymtl.train  # noqa: F401  (registers the schema in Hydra's ConfigStore)
from hymtl.data.toydata import make_toy_image_folder, write_class_images  # noqa: F401

# Small images keep a ResNet-18 epoch on CPU to a second or two.
TINY = [
    "data.image_size=32",
    "data.resize_size=36",
    "num_workers=0",
    "model.pretrained=false",
    "precision=fp32",
]


def run_cli(args, cwd):
    """`python -m hymtl.train ARGS` in a subprocess, as a user would run it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hymtl.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def compose_config(overrides: list[str] | None = None):
    with initialize_config_module("hymtl.conf", version_base="1.3"):
        return compose("config", overrides=overrides or [])


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """ROOT/{train,val}/{ants,bees}/*.jpg"""
    return make_toy_image_folder(tmp_path / "images")

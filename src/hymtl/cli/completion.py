"""Tab completion of `hymtl train ...` without importing torch: the keys and options come from
the config alone (schema, conf/ and its resolvers), so a TAB answers in well under a second
instead of paying for torch, torchvision and the training code."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from hymtl.config.schema import register_configs
from hymtl.run.resolvers import register_resolvers


@hydra.main(version_base="1.3", config_path="pkg://hymtl.conf", config_name="config")
def train_config(cfg: DictConfig) -> None:
    """hymtl.train's config, as `@hydra.main` composes it: only `-sc` reaches it here."""


def complete_train() -> None:
    """Answer Hydra's `-sc query=bash` for `hymtl train` (COMP_LINE names the line)."""
    register_resolvers()
    register_configs()
    sys.argv = ["hymtl-train", "-sc", "query=bash"]
    train_config()

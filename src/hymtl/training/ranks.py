"""Which process of a torchrun launch this is, from its environment alone (no torch import:
the config's resolvers and tab completion need it, and must start fast)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_ranks() -> Ranks:
    """What torchrun (or any launcher following its env:// convention) asked for."""
    env = os.environ
    return Ranks(
        int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    )


def hydra_output_dir(fresh: str) -> str:
    """Where Hydra puts a non-zero rank's log and .hydra/: outside the run dir, which belongs
    to rank 0 (each process would otherwise make its own timestamped run dir)."""
    rank = launched_ranks().rank
    if rank == 0:
        return fresh
    relative = Path(fresh).relative_to(Path(fresh).anchor)  # resume=/abs/RUN_DIR included
    return str(Path(tempfile.gettempdir()) / f"hymtl-rank{rank}" / relative)

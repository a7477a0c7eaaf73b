"""Where a run came from, for summary.json's `provenance`: the command that started it (and, in
a sweep, the one that reruns this job alone), the git state of the code, and a fingerprint of
the images it used."""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from hymtl import display_path


def command_line() -> str | None:
    """The command as typed, when this process is the hymtl CLI (not a library call). Under
    torchrun (WORLD_SIZE > 1) the launch that reproduces it: torchrun with as many processes
    per node as the run had (one node: what hymtl is tested with)."""
    if not HydraConfig.initialized():
        return None
    launcher = ["python", "-m", "hymtl.train"]
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        launcher = ["torchrun", f"--nproc_per_node={world_size}", "-m", "hymtl.train"]
    return shlex.join([*launcher, *sys.argv[1:]])


def job_command_line() -> str | None:
    """In a sweep (-m), the one command that reruns this job alone: its own overrides (Hydra's
    job overrides, the sweep's choices resolved), which `command` — the sweep's — does not say.
    None outside a sweep, where `command` is the run's own."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return shlex.join(["python", "-m", "hymtl.train", *hydra_cfg.overrides.task])


def git_state(folder: Path) -> dict | None:
    """The commit of the checkout hymtl runs from, and whether it had uncommitted changes;
    None for an installed package or where git is missing."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def data_fingerprint(splits) -> str:
    """SHA-256 over every used image's path (relative to data.root) and size, per split: the
    same images give the same fingerprint on any machine; a file added, removed, renamed or
    rewritten at another size changes it."""
    digest = hashlib.sha256()
    root = Path(splits.root)
    for split_name, dataset in (("train", splits.train), ("val", splits.val)):
        for path, target in sorted(dataset.samples):
            relative = os.path.relpath(path, root)
            size = os.stat(path).st_size
            digest.update(f"{split_name}\0{display_path(relative)}\0{size}\0{target}\n".encode())
    return digest.hexdigest()

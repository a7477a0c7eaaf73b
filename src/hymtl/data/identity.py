"""What a run trains on, recorded so that a resume (or a kept sweep job) can tell whether the
images under data.root changed since: the class names in order, and every candidate file (the
files under the class folders, usable or not) with its size and a hash of its first and last
KiB. The ends change when a JPEG is re-encoded or edited, and reading 2 KiB per file keeps the
check cheap even for large folders. Only regular files are opened."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from hymtl import UserError, display_path
from hymtl.data.datasets import DataSplits
from hymtl.data.folders import list_class_files

END_BYTES = 1024


def file_signature(path: str) -> str:
    """`size:hash of the first and last KiB` for a regular file; `special` for a FIFO, device
    or socket (never opened: reading one could block), `missing` where it cannot be read."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return "special"
        with open(path, "rb") as handle:
            ends = handle.read(END_BYTES)
            if info.st_size > END_BYTES:
                handle.seek(max(info.st_size - END_BYTES, END_BYTES))
                ends += handle.read(END_BYTES)
    except OSError:
        return "missing"
    return f"{info.st_size}:{hashlib.sha256(ends).hexdigest()[:16]}"


def data_identity(root: str | Path, classes: list[str], files: list[str]) -> dict:
    """The identity of a data folder: classes in order, and {path relative to root: signature}
    for every candidate file, with one SHA-256 over all of it."""
    signatures = {
        display_path(os.path.relpath(path, root)): file_signature(path) for path in sorted(files)
    }
    digest = hashlib.sha256("\0".join(classes).encode() + b"\n")
    for relative, signature in sorted(signatures.items()):
        digest.update(f"{relative}\0{signature}\n".encode())
    return {"classes": list(classes), "files": signatures, "sha256": digest.hexdigest()}


def splits_identity(splits: DataSplits) -> dict:
    """The identity of the folder a run's splits were scanned from."""
    return data_identity(splits.root, splits.classes, splits.candidates)


def folder_identity(root: str, train_dir: str = "train", val_dir: str = "val") -> dict:
    """The identity of data.root as hymtl.data.load_data would list it, without decoding any
    image: cheap enough to check a kept sweep job against."""
    root_path = Path(root).expanduser()
    if (root_path / train_dir).is_dir() and (root_path / val_dir).is_dir():
        classes, train_files = list_class_files(root_path / train_dir)
        _, val_files = list_class_files(root_path / val_dir)
        found = [train_files, val_files]
    else:
        classes, files = list_class_files(root_path)
        found = [files]
    candidates = [path for by_class in found for paths in by_class.values() for path in paths]
    return data_identity(root_path, classes, candidates)


def kept_run_problem(summary: dict | None, data_config) -> str | None:
    """Why a completed run cannot be kept as this sweep's job: it was trained on other data
    than data.root holds now. None when it can (or when it recorded no identity)."""
    recorded = (summary or {}).get("data_identity")
    if not recorded:
        return None
    try:
        current = folder_identity(data_config.root, data_config.train_dir, data_config.val_dir)
    except UserError as error:
        return str(error)
    if current["sha256"] == recorded["sha256"]:
        return None
    return (
        f"it was trained on other data (data.root now has {len(current['files'])} files in "
        f"{current['classes']}, the run had {recorded['n_files']} in {recorded['classes']} or "
        "other contents)"
    )


def brief(identity: dict) -> dict:
    """The identity without its per-file table, for summary.json."""
    return {
        "classes": identity["classes"],
        "n_files": len(identity["files"]),
        "sha256": identity["sha256"],
    }


def image_changes(recorded: dict, current: dict) -> str | None:
    """'2 added, 1 removed, 1 changed (e.g. train/ants/a.jpg)', or None when the same files
    with the same contents are there."""
    if recorded["sha256"] == current["sha256"]:
        return None
    before, after = recorded["files"], current["files"]
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(path for path in set(before) & set(after) if before[path] != after[path])
    parts = [
        f"{len(found)} {what}"
        for what, found in (("added", added), ("removed", removed), ("changed", changed))
        if found
    ]
    examples = (added + removed + changed)[:3]
    return f"{', '.join(parts) or 'the files differ'} (e.g. {', '.join(examples)})"


def check_same_data(
    recorded: dict | None, current: dict, where: str, allow_change: bool, protocol: str
) -> str | None:
    """None when the data is what the run trained on; the change, when the user allowed it;
    else UserError in one line. Changed classes are always refused: the model's outputs would
    mean other classes. A held-out test set may never change under a run."""
    if recorded is None:
        return None  # a checkpoint from before hymtl recorded its data: nothing to compare
    if recorded["classes"] != current["classes"]:
        raise UserError(
            f"{where}: the class folders changed since the run started (it has "
            f"{recorded['classes']}, data.root now has {current['classes']}): the model's outputs "
            "would mean other classes; restore the folders, or start a new run"
        )
    change = image_changes(recorded, current)
    if change is None:
        return None
    if allow_change and protocol == "reference":
        return change
    if allow_change:
        raise UserError(
            f"{where}: the images under data.root changed since the run started ({change}); "
            f"with evaluation={protocol} that would move images between the test set and "
            "training: restore them, or start a new run"
        )
    raise UserError(
        f"{where}: the images under data.root changed since the run started ({change}); restore "
        "them, start a new run, or add resume_allow_data_change=true to go on with the new "
        "images (recorded in summary.json)"
    )

"""Class folders → the usable images in them: which folders are classes, which files are
candidates (every non-hidden file, whatever its extension), and which of those decode to a
usable photo (the scan, which decodes every candidate once and names each file it leaves out)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from hymtl import UserError, display_path
from hymtl.data.cache import DecodedCache, usable_cores
from hymtl.data.images import check_image, refuse_decompression_bombs

log = logging.getLogger("hymtl.data")


def is_utf8(name: str) -> bool:
    """Whether `name` is text every writer and plot can take (no undecodable bytes in it)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_hidden(name: str) -> bool:
    """Dot-names (`.ipynb_checkpoints`, `.DS_Store`, editors' backups) are tool clutter: neither
    classes nor images."""
    return name.startswith(".")


def walk_files(folder: str | os.PathLike, seen_dirs: set[str] | None = None) -> list[str]:
    """Every file under `folder` except hidden ones, recursively, in sorted order.

    Directory symlinks are followed, but each real directory is visited once: a link back up
    the tree (`ln -s . loop`) or to a folder already walked adds nothing, so no image is counted
    twice and a loop never expands. `seen_dirs` (real paths) carries that memory across calls.
    Broken symlinks stay in the list: the image check names them as unusable.
    """
    seen = set() if seen_dirs is None else seen_dirs
    seen.add(os.path.realpath(folder))
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, name))
            if not is_hidden(name) and real not in seen:
                seen.add(real)
                kept.append(name)
        dirnames[:] = kept  # os.walk descends only into what is left here
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if not is_hidden(f)]
    return found


def list_class_files(folder: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Class names (non-hidden sub-folder names, sorted) and the files under each, recursively
    (see walk_files: each real directory once, hidden names ignored)."""
    if not folder.is_dir():
        raise UserError(f"data folder {folder} does not exist; set data.root= to an image folder")
    classes = sorted(
        entry.name for entry in os.scandir(folder) if entry.is_dir() and not is_hidden(entry.name)
    )
    if not classes:
        raise UserError(
            f"{folder} has no class sub-folders; expected {folder}/CLASS_NAME/*.jpg "
            "(ImageFolder layout)"
        )
    # Class names go into checkpoints, summaries, CSV headers and plot titles; a name that is
    # not text (matplotlib cannot draw it) would fail only after training, so refuse it now.
    not_text = [display_path(name) for name in classes if not is_utf8(name)]
    if not_text:
        raise UserError(
            f"class folder name(s) {', '.join(not_text)} in {display_path(folder)} are not "
            "valid UTF-8; rename them (class names appear in checkpoints, reports and plots)"
        )
    real_dirs = {name: os.path.realpath(folder / name) for name in classes}
    first_with = {}
    for name, real in real_dirs.items():
        if real in first_with:
            raise UserError(
                f"class folders {first_with[real]!r} and {name!r} in {display_path(folder)} are "
                "the same folder (a symlink); one image cannot belong to two classes"
            )
        first_with[real] = name
    # The class folders themselves count as seen, so a link from one class into another (or
    # up to `folder`) does not put the same images under two classes.
    seen_dirs = {os.path.realpath(folder), *real_dirs.values()}
    files = {name: walk_files(folder / name, seen_dirs) for name in classes}
    return classes, files


def warn_skipped(skipped: list[tuple[str, str]]) -> None:
    """The one warning that names every file left out, and why (training, predict, evaluate)."""
    if skipped:
        listing = "; ".join(f"{display_path(path)}: {reason}" for path, reason in skipped)
        log.warning("skipped %d unusable file(s): %s", len(skipped), listing)


def scan_usable(
    files: dict[str, list[str]],
    classes: list[str],
    min_colors: int,
    desc: str,
    cache: DecodedCache | None = None,
) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """Decode every candidate file once (in threads: PIL releases the GIL while decoding)."""
    # Every file is a candidate whatever its extension: content decides (a GIF or a .jpg that
    # is really text), and whatever is left out is named in the warning, never dropped silently.
    candidates = [(path, index) for index, name in enumerate(classes) for path in files[name]]
    usable, skipped = [], []
    refuse_decompression_bombs()
    pool = ThreadPoolExecutor(max_workers=usable_cores())
    try:
        checked = pool.map(lambda sample: check_image(sample[0], min_colors), candidates)
        # Results arrive in the candidates' order; each decoded image is kept (cache) or
        # dropped as it comes, so the scan never holds more than the cache's worth of pixels.
        for sample, (reason, image) in tqdm(
            zip(candidates, checked),
            total=len(candidates),
            desc=f"checking {desc} images",
            disable=None,
            leave=False,
        ):
            if reason:
                skipped.append((sample[0], reason))
                continue
            usable.append(sample)
            if cache is not None:
                cache.offer(sample[0], image)
    finally:
        # On Ctrl-C, drop the files not yet started instead of decoding them all first.
        pool.shutdown(wait=True, cancel_futures=True)
    return usable, skipped


def require_classes(samples: list[tuple[str, int]], classes: list[str], where: str) -> None:
    counts = {name: 0 for name in classes}
    for _, target in samples:
        counts[classes[target]] += 1
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise UserError(
            f"{where}: class folder(s) {empty} contain no usable image; add images or remove "
            "the folder"
        )
    if len(classes) < 2:
        raise UserError(f"{where}: found only the class {classes}; classification needs >= 2")

"""data.root → the run's datasets (load_data, the `_target_` of conf/data/), in stages: find
the folder, scan its images (train/ and val/ folders, or one folder split by val_fraction),
split them by the evaluation protocol; and the seeded DataLoader that reads them (make_loader).
"""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from hymtl import UserError
from hymtl.data.cache import DecodedCache, resolve_cache_mb
from hymtl.data.datasets import DataSplits, DecodeAhead, ImageListDataset
from hymtl.data.folders import list_class_files, require_classes, scan_usable, warn_skipped
from hymtl.data.splits import Samples, partition, stratified_split
from hymtl.data.transforms import eval_transform, train_transform

log = logging.getLogger("hymtl.data")


@dataclass
class Scanned:
    """The usable images under data.root as its layout gives them, before the evaluation
    protocol splits them: `train` and `val` are train/ and val/ (for one folder, its split)."""

    classes: list[str]
    train: Samples
    val: Samples
    skipped: list[tuple[str, str]]
    candidates: list[str]  # every file under the class folders
    layout: str


def data_folder(name: str, root: str) -> Path:
    """data.root as a folder, or the one line that says why it is not one."""
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        hint = " (fetch it with `python scripts/download_data.py`)" if name == "hymenoptera" else ""
        what = "is a file, not a folder" if root_path.exists() else "does not exist"
        raise UserError(f"data.root={root} {what}{hint}; point data.root= at an image folder")
    return root_path


def has_split_folders(root_path: Path, train_dir: str, val_dir: str) -> bool:
    """Whether data.root has train/ and val/ folders (True) or is one folder of class folders
    (False); one of the two without the other is refused."""
    has_train, has_val = (root_path / train_dir).is_dir(), (root_path / val_dir).is_dir()
    if has_train != has_val:
        missing = val_dir if has_train else train_dir
        raise UserError(
            f"{root_path} has {train_dir if has_train else val_dir}/ but no {missing}/; "
            f"add it, or give a folder of class folders to split by data.val_fraction"
        )
    return has_train


def scan_split_folders(
    root_path: Path, train_dir: str, val_dir: str, min_colors: int, cache: DecodedCache | None
) -> Scanned:
    """The usable images of train/ and val/, which must have the same class folders."""
    classes, train_files = list_class_files(root_path / train_dir)
    val_classes, val_files = list_class_files(root_path / val_dir)
    if val_classes != classes:
        raise UserError(
            f"class folders differ: {train_dir}/ has {classes}, {val_dir}/ has {val_classes}; "
            "both splits need the same class folders"
        )
    candidates = [
        path for found in (train_files, val_files) for paths in found.values() for path in paths
    ]
    train_samples, skipped = scan_usable(train_files, classes, min_colors, "train", cache)
    val_samples, val_skipped = scan_usable(val_files, classes, min_colors, "val", cache)
    skipped += val_skipped
    require_classes(train_samples, classes, f"{root_path / train_dir}")
    require_classes(val_samples, classes, f"{root_path / val_dir}")
    layout = f"{train_dir}/ and {val_dir}/ folders"
    return Scanned(classes, train_samples, val_samples, skipped, candidates, layout)


def scan_one_folder(
    root_path: Path,
    val_fraction: float,
    min_colors: int,
    cache: DecodedCache | None,
    seed: int,
    evaluation: dict | None,
) -> Scanned:
    """The usable images of one folder of class folders, split into train and val by
    val_fraction (stratified)."""
    if not 0 < val_fraction < 1:
        raise UserError(f"data.val_fraction={val_fraction} must be between 0 and 1")
    classes, files = list_class_files(root_path)
    candidates = [path for paths in files.values() for path in paths]
    samples, skipped = scan_usable(files, classes, min_colors, "all", cache)
    require_classes(samples, classes, str(root_path))
    # The reference splits with the training seed (as it always has); the other protocols
    # with split_seed, so the training seed never moves an image between splits.
    protocol = (evaluation or {}).get("protocol", "reference")
    split_seed = seed if protocol == "reference" else evaluation["split_seed"]
    what = f"of {len(classes)} classes with data.val_fraction={val_fraction}"
    train_samples, val_samples = stratified_split(samples, val_fraction, split_seed, what)
    layout = f"one folder split by val_fraction={val_fraction} (seed {split_seed})"
    return Scanned(classes, train_samples, val_samples, skipped, candidates, layout)


def by_role(
    found: Scanned,
    root_path: Path,
    evaluation: dict | None,
    train_tf,
    val_tf,
    cache: DecodedCache | None,
) -> DataSplits:
    """The scanned images as the run's datasets: train, the split that chooses the epoch, and
    the test set, as the evaluation protocol partitions them (hymtl/data/splits.py)."""
    classes = found.classes
    parts = partition(found.train, found.val, evaluation)
    return DataSplits(
        train=ImageListDataset(parts.train, classes, train_tf, cache),
        val=ImageListDataset(parts.select, classes, val_tf, cache),
        classes=classes,
        root=str(root_path),
        layout=found.layout,
        skipped=found.skipped,
        test=None if parts.test is None else ImageListDataset(parts.test, classes, val_tf, cache),
        candidates=found.candidates,
    )


def load_data(
    name: str,
    root: str,
    train_dir: str = "train",
    val_dir: str = "val",
    val_fraction: float = 0.2,
    image_size: int = 224,
    resize_size: int = 256,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    min_colors: int = 64,
    cache_images: bool = True,
    cache_max_mb: float | str = "auto",
    seed: int = 0,
    augment: str = "reference",
    evaluation: dict | None = None,
) -> DataSplits:
    """The usable images under `root`, split into train / val (the images that choose the
    epoch) / test as `evaluation` says (hymtl/data/splits.py; None: the reference protocol)."""
    root_path = data_folder(name, root)
    cache = DecodedCache(resolve_cache_mb(cache_max_mb)) if cache_images else None
    train_tf = train_transform(image_size, mean, std, augment, resize_size)
    val_tf = eval_transform(resize_size, image_size, mean, std)
    if has_split_folders(root_path, train_dir, val_dir):
        found = scan_split_folders(root_path, train_dir, val_dir, min_colors, cache)
    else:
        found = scan_one_folder(root_path, val_fraction, min_colors, cache, seed, evaluation)
    if cache is not None:
        log.info("decoded-image cache: %d images, %.0f MiB", len(cache.images), cache.bytes / 2**20)
    warn_skipped(found.skipped)
    return by_role(found, root_path, evaluation, train_tf, val_tf, cache)


def seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch in each worker from its generator; numpy and random follow it.
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def worker_start_method() -> str | None:
    """The "fork" start method on Linux, named rather than left to the default: inside a
    joblib launcher job (loky) the default context is loky's, which cannot start DataLoader
    workers, and Python 3.14 makes forkserver the default, which would pickle the
    decoded-image cache to each worker instead of sharing it. Elsewhere the platform's default."""
    return "fork" if sys.platform.startswith("linux") else None


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    seed: int,
    pin_memory: bool,
    sampler: Sampler | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A seeded DataLoader: same seed, same batches, whatever num_workers is. A `sampler`
    (DistributedSampler under torchrun) does the shuffling instead. Without workers, images the
    cache does not hold are decoded ahead in threads (DecodeAhead)."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    if num_workers == 0 and isinstance(dataset, ImageListDataset) and not dataset.all_cached():
        if sampler is None:
            # What DataLoader would build from shuffle= and generator=, so the same draws.
            sampler = RandomSampler(dataset, generator=generator) if shuffle else None
            sampler = sampler or SequentialSampler(dataset)
        sampler = DecodeAhead(sampler, dataset, ahead=2 * batch_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        multiprocessing_context=worker_start_method() if num_workers > 0 else None,
        pin_memory=pin_memory,
        drop_last=drop_last,
        # Not persistent: fresh workers each epoch draw their seeds from `generator`, so a
        # resumed run (which restores the generator) augments exactly like an unbroken one.
        persistent_workers=False,
        worker_init_fn=seed_worker,
    )

"""Image folders → train/val datasets with the reference transforms.

Every file is decoded once before training, so a file that is not a usable image is skipped
with one warning naming it instead of crashing the loop mid-epoch.

    images.py      one file → an RGB image, or why it is unusable (special files, bombs)
    folders.py     class folders → candidate files → the usable ones (the start-up scan)
    cache.py       decoded images held in memory (data.cache_max_mb)
    transforms.py  train (augment=) and eval transforms
    datasets.py    ImageListDataset, DecodeAhead (decodes ahead of the loader), DataSplits
    loading.py     load_data (conf/data/'s `_target_`: hymtl.data.load_data), make_loader
    splits.py      evaluation protocols;  identity.py  what is under data.root

Every name other modules use is importable from hymtl.data itself (`__all__`).
"""

from __future__ import annotations

from hymtl import UserError, display_path
from hymtl.data.cache import (
    AUTO_CACHE_FALLBACK_MB,
    AUTO_CACHE_RESERVE_MB,
    AUTO_CACHE_SHARE,
    DecodedCache,
    available_memory_mb,
    resolve_cache_mb,
    usable_cores,
)
from hymtl.data.datasets import DataSplits, DecodeAhead, ImageListDataset, KeptEvalBatches
from hymtl.data.folders import (
    is_hidden,
    is_utf8,
    list_class_files,
    require_classes,
    scan_usable,
    walk_files,
    warn_skipped,
)
from hymtl.data.images import (
    FILE_KINDS,
    check_image,
    not_regular_reason,
    open_rgb,
    refuse_decompression_bombs,
    to_rgb,
)
from hymtl.data.loading import load_data, make_loader, seed_worker, worker_start_method
from hymtl.data.splits import partition
from hymtl.data.transforms import eval_transform, train_transform

__all__ = [
    "AUTO_CACHE_FALLBACK_MB",
    "AUTO_CACHE_RESERVE_MB",
    "AUTO_CACHE_SHARE",
    "FILE_KINDS",
    "DataSplits",
    "DecodeAhead",
    "DecodedCache",
    "ImageListDataset",
    "KeptEvalBatches",
    "UserError",
    "available_memory_mb",
    "check_image",
    "display_path",
    "eval_transform",
    "is_hidden",
    "is_utf8",
    "list_class_files",
    "load_data",
    "make_loader",
    "not_regular_reason",
    "open_rgb",
    "partition",
    "refuse_decompression_bombs",
    "require_classes",
    "resolve_cache_mb",
    "scan_usable",
    "seed_worker",
    "to_rgb",
    "train_transform",
    "usable_cores",
    "walk_files",
    "warn_skipped",
    "worker_start_method",
]

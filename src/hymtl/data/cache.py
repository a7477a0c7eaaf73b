"""Decoded images kept in memory: the cache the start-up scan fills (DecodedCache), sized by
`data.cache_max_mb` from the memory this machine has free (resolve_cache_mb). What it does not
hold is decoded ahead of the loader (datasets.DecodeAhead), on as many threads as there are
cores (usable_cores)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PIL import Image

from hymtl.data.images import open_rgb

log = logging.getLogger("hymtl.data")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may run on (taskset, cgroups)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def available_memory_mb() -> float | None:
    """Memory the kernel could give this process now without swapping (MemAvailable), in MiB;
    None where neither /proc/meminfo nor sysconf says."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return None


# `data.cache_max_mb: auto`: half of what is free at start-up, after setting aside room for the
# model's working set (ResNet-50 training at batch 32 peaks near 2 GiB); the other half is left
# to other processes and to the page cache the files come from.
AUTO_CACHE_RESERVE_MB = 2048
AUTO_CACHE_SHARE = 0.5
AUTO_CACHE_FALLBACK_MB = 4096  # where the free memory cannot be read


def resolve_cache_mb(cache_max_mb: float | str) -> float:
    """`data.cache_max_mb` in MiB: a number as given, or "auto" from the memory free now."""
    if cache_max_mb != "auto":
        return float(cache_max_mb)
    available = available_memory_mb()
    if available is None:
        log.info("decoded-image cache limit: %d MiB (free memory unknown)", AUTO_CACHE_FALLBACK_MB)
        return AUTO_CACHE_FALLBACK_MB
    limit = max(0.0, (available - AUTO_CACHE_RESERVE_MB) * AUTO_CACHE_SHARE)
    log.info(
        "decoded-image cache limit: %.0f MiB (data.cache_max_mb=auto: half of the %.0f MiB "
        "available, less %d MiB for the model)",
        limit,
        available,
        AUTO_CACHE_RESERVE_MB,
    )
    return limit


class DecodedCache:
    """Decoded RGB images by path, filled by the start-up scan (which decodes every file anyway),
    so epochs skip JPEG decoding. DataLoader workers share it copy-on-write after fork.
    Stops adding once `max_mb` is reached; uncached files are decoded on access as usual."""

    def __init__(self, max_mb: float) -> None:
        self.max_bytes = max_mb * 2**20
        self.bytes = 0
        self.images: dict[str, Image.Image] = {}

    def offer(self, path: str, image: Image.Image) -> None:
        size = image.width * image.height * 4  # PIL keeps RGB as 4 bytes per pixel
        if self.bytes + size <= self.max_bytes:
            self.images[path] = image
            self.bytes += size

    def reserve(self, size: int) -> bool:
        """Room for `size` more bytes kept for the run (the evaluation images once transformed,
        KeptEvalBatches), counted against the same limit; False when they would not fit."""
        if self.bytes + size > self.max_bytes:
            return False
        self.bytes += size
        return True

    def get(self, path: str) -> Image.Image:
        image = self.images.get(path)
        return image if image is not None else open_rgb(path)

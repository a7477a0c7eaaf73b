"""Image folders → train/val datasets with the reference transforms.

Every file is decoded once before training, so a file that is not a usable image is skipped
with one warning naming it instead of crashing the loop mid-epoch.
"""

from __future__ import annotations

import logging
import os
import random
import stat
import sys
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from torchvision import transforms
from torchvision.transforms import v2
from tqdm import tqdm

from hymtl import UserError, display_path
from hymtl.data.splits import partition

log = logging.getLogger(__name__)


def refuse_decompression_bombs() -> None:
    """An image past PIL's pixel limit (~89 Mpx) is a decompression bomb or at least no training
    photo: PIL only warns; make that warning an error (process-wide, idempotent), so scans skip
    the file and name it. Called by every scan before it opens a file."""
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: 16-bit and 32-bit grey are rescaled rather than clipped, and
    palette images with transparency go through RGBA (PIL warns otherwise)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        image = Image.fromarray(np.clip(pixels / top * 255.0, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        span = max(float(pixels.max() - pixels.min()), 1e-12)
        image = Image.fromarray(((pixels - pixels.min()) / span * 255).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode a file to an upright RGB image (EXIF rotation applied, any mode converted)."""
    with Image.open(path) as image:
        return to_rgb(ImageOps.exif_transpose(image))


FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def not_regular_reason(path: str) -> str | None:
    """Why `path` must not be opened as an image, from os.stat alone (symlinks resolved), or
    None for a regular file. Opening a FIFO blocks until a writer comes (in a scan thread, where
    not even Ctrl-C reaches it), /dev/zero never ends, and opening some devices acts on them:
    only regular files are ever opened. A path that cannot be stat'ed (a broken symlink, a file
    deleted meanwhile) is None too: the decode that follows names it as undecodable."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    kind = next((kind for test, kind in FILE_KINDS if test(mode)), "a special file")
    if os.path.islink(path):
        kind = f"a symlink to {kind}, {display_path(os.path.realpath(path))}"
    return f"not a regular file ({kind})"


def check_image(path: str, min_colors: int) -> tuple[str | None, Image.Image | None]:
    """(None, decoded image) if `path` is a usable photo, else (the reason it is not, None).
    Only regular files are opened (not_regular_reason)."""
    reason = not_regular_reason(path)
    if reason:
        return reason, None
    try:
        image = open_rgb(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return f"too large, refused by the decompression-bomb guard ({error})", None
    except Exception as error:  # PIL raises many types for broken files; all mean "unusable"
        return f"cannot be decoded ({type(error).__name__}: {error})".replace("\n", " "), None
    if min_colors > 0 and image.getcolors(maxcolors=min_colors - 1) is not None:
        return f"fewer than {min_colors} colours, a placeholder rather than a photo", None
    return None, image


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

    def get(self, path: str) -> Image.Image:
        image = self.images.get(path)
        return image if image is not None else open_rgb(path)


def train_transform(image_size: int, mean, std, augment: str = "reference", resize_size: int = 256):
    """The training images' transform, as `augment=` names it (conf/augment/)."""
    if augment == "none":
        return eval_transform(resize_size, image_size, mean, std)
    if augment == "trivialaugment":
        return v2.Compose(
            [
                v2.ToImage(),
                v2.RandomResizedCrop(image_size, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.TrivialAugmentWide(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean, std),
            ]
        )
    # The reference keeps the classic transforms: the same random draws as every earlier run,
    # so a seed reproduces the committed results exactly.
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def eval_transform(resize_size: int, image_size: int, mean, std) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Resize(resize_size),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


class ImageListDataset(Dataset):
    """(path, class index) pairs, decoded to RGB and transformed on access."""

    def __init__(
        self,
        samples: list[tuple[str, int]],
        classes: list[str],
        transform,
        cache: DecodedCache | None = None,
    ) -> None:
        self.samples = samples
        self.classes = classes
        self.transform = transform
        self.cache = cache
        # Decodes DecodeAhead started for upcoming samples, by path (main process only).
        self.decoding: dict[str, Future] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        return self.transform(self.decoded(path)), target

    def decoded(self, path: str) -> Image.Image:
        started = self.decoding.pop(path, None)
        if started is not None:
            return started.result()
        return self.cache.get(path) if self.cache is not None else open_rgb(path)

    def is_cached(self, path: str) -> bool:
        return self.cache is not None and path in self.cache.images

    def all_cached(self) -> bool:
        return all(self.is_cached(path) for path, _ in self.samples)

    @property
    def targets(self) -> list[int]:
        return [target for _, target in self.samples]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may run on (taskset, cgroups)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class DecodeAhead(Sampler):
    """Its sampler's indices, unchanged, while background threads decode the uncached images
    `ahead` positions before the loader asks for them.

    For DataLoaders without workers over a partly cached dataset: without it, every uncached
    image is decoded in the training process between steps. PIL releases the GIL while decoding,
    so the decode overlaps the model's step. Only pixels are prepared ahead: the transforms (and
    every random draw) still run at access, in order, so the batches are those of a full cache.
    The order is drawn in full when the epoch's first index is asked for, the moment the wrapped
    sampler would have drawn it, so the loader's generator advances exactly as before.
    """

    def __init__(self, sampler: Sampler, dataset: ImageListDataset, ahead: int) -> None:
        self.sampler, self.dataset, self.ahead = sampler, dataset, ahead

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):  # DistributedSampler reshuffles per epoch
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        order = list(self.sampler)
        paths = [self.dataset.samples[index][0] for index in order]
        decoding = self.dataset.decoding
        pool = ThreadPoolExecutor(max_workers=usable_cores(), thread_name_prefix="decode-ahead")

        def start(position: int) -> None:
            if position < len(paths):
                path = paths[position]
                if path not in decoding and not self.dataset.is_cached(path):
                    decoding[path] = pool.submit(open_rgb, path)

        try:
            for position in range(self.ahead):
                start(position)
            for position, index in enumerate(order):
                start(position + self.ahead)
                yield index
        finally:
            # An epoch cut short (an exception, a bench's islice) leaves no decode running.
            pool.shutdown(wait=False, cancel_futures=True)
            decoding.clear()


@dataclass
class DataSplits:
    """The images a run uses, by role (hymtl/data/splits.py). `val` is whatever chooses the epoch:
    val/ under the reference protocol, the select split under holdout and kfold."""

    train: ImageListDataset
    val: ImageListDataset
    classes: list[str]
    root: str
    layout: str  # "train/val folders" or "split by val_fraction"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    test: ImageListDataset | None = None  # holdout, kfold: evaluated once, with the chosen weights
    candidates: list[str] = field(default_factory=list)  # every file under the class folders
    identity: dict | None = None  # what is under data.root (hymtl/data/identity.py)


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
    protocol = (evaluation or {}).get("protocol", "reference")
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        hint = " (fetch it with `python scripts/download_data.py`)" if name == "hymenoptera" else ""
        what = "is a file, not a folder" if root_path.exists() else "does not exist"
        raise UserError(f"data.root={root} {what}{hint}; point data.root= at an image folder")
    cache = DecodedCache(resolve_cache_mb(cache_max_mb)) if cache_images else None
    train_tf = train_transform(image_size, mean, std, augment, resize_size)
    val_tf = eval_transform(resize_size, image_size, mean, std)
    has_train, has_val = (root_path / train_dir).is_dir(), (root_path / val_dir).is_dir()
    if has_train != has_val:
        missing = val_dir if has_train else train_dir
        raise UserError(
            f"{root_path} has {train_dir if has_train else val_dir}/ but no {missing}/; "
            f"add it, or give a folder of class folders to split by data.val_fraction"
        )

    if has_train:
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
    else:
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction={val_fraction} must be between 0 and 1")
        classes, files = list_class_files(root_path)
        candidates = [path for paths in files.values() for path in paths]
        samples, skipped = scan_usable(files, classes, min_colors, "all", cache)
        require_classes(samples, classes, str(root_path))
        # The reference splits with the training seed (as it always has); the other protocols
        # with split_seed, so the training seed never moves an image between splits.
        split_seed = seed if protocol == "reference" else evaluation["split_seed"]
        try:
            train_samples, val_samples = train_test_split(
                samples,
                test_size=val_fraction,
                random_state=split_seed,
                stratify=[target for _, target in samples],
            )
        except ValueError as error:
            raise UserError(
                f"cannot split {len(samples)} images of {len(classes)} classes with "
                f"data.val_fraction={val_fraction}: {error}"
            ) from None
        layout = f"one folder split by val_fraction={val_fraction} (seed {split_seed})"

    if cache is not None:
        log.info("decoded-image cache: %d images, %.0f MiB", len(cache.images), cache.bytes / 2**20)
    warn_skipped(skipped)
    parts = partition(train_samples, val_samples, evaluation)
    return DataSplits(
        train=ImageListDataset(parts.train, classes, train_tf, cache),
        val=ImageListDataset(parts.select, classes, val_tf, cache),
        classes=classes,
        root=str(root_path),
        layout=layout,
        skipped=skipped,
        test=None if parts.test is None else ImageListDataset(parts.test, classes, val_tf, cache),
        candidates=candidates,
    )


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

"""What the loaders read: a list of (path, class index) decoded on access (ImageListDataset),
the sampler that decodes its uncached images ahead of the loader (DecodeAhead), the evaluation
batches transformed once (KeptEvalBatches), and a run's datasets by role (DataSplits)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler, default_collate

from hymtl.data.cache import DecodedCache, usable_cores
from hymtl.data.images import open_rgb


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


def draw_as_a_dataloader_does(generator: torch.Generator | None = None) -> None:
    """The one draw a DataLoader's iterator makes when it starts (its workers' base seed), from
    its generator or, without one, torch's global generator. The training crops read the global
    generator too: batches served without a DataLoader make the same draw, or every later epoch
    would crop differently from a run whose batches come through one."""
    torch.empty((), dtype=torch.int64).random_(generator=generator)


class EvalBatchesInOrder:
    """An evaluation loader without a DataLoader: `dataset` in batches of `batch_size`, in
    order, each pass starting with the draw a DataLoader's would make. Subclasses say where
    the batches come from (batches_in_order)."""

    dataset: Dataset
    batch_size: int

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        draw_as_a_dataloader_does()
        return self.batches_in_order()

    def batches_in_order(self):
        raise NotImplementedError


class KeptEvalBatches(EvalBatchesInOrder):
    """An evaluation DataLoader's batches (in order, no workers) that transforms each image
    once: the evaluation transform draws nothing at random, so the first pass's batches are
    kept and every later epoch reads them again instead of redoing Resize, CenterCrop,
    ToTensor and Normalize (docs/performance.md, "The defaults"). The batches are the
    DataLoader's, bit for bit. A pass cut short keeps what it built."""

    def __init__(self, dataset: ImageListDataset, batch_size: int) -> None:
        self.dataset, self.batch_size = dataset, batch_size
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def batches_in_order(self):
        for number, start in enumerate(range(0, len(self.dataset), self.batch_size)):
            if number == len(self.batches):
                stop = min(start + self.batch_size, len(self.dataset))
                self.batches.append(default_collate([self.dataset[i] for i in range(start, stop)]))
            yield self.batches[number]


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

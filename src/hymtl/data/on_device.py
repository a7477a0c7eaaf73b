"""Images held on the training device (`images_on_device`): the decoded training images as uint8
tensors there, the reference augmentation done there per sample, and the evaluation images
transformed once. No DataLoader, no worker processes, and no host-to-device copy per step.

The batches are those a DataLoader without workers gives: the same order, drawn from the same
generator, and the same crop boxes and flips, drawn by torchvision's own
RandomResizedCrop.get_params from the same global torch generator in the same order. Only the
resampling differs: torch's antialiased bilinear interpolation instead of PIL's (the two differ
by about one grey level per pixel; tests/test_on_device.py measures it)."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import RandomSampler
from torchvision import transforms

from hymtl.data.datasets import EvalBatchesInOrder, ImageListDataset, draw_as_a_dataloader_does

log = logging.getLogger("hymtl.data")

# What the device path can do on the GPU; other augmentations keep the DataLoader.
DEVICE_AUGMENTS = ("reference", "none")
# Share of the device's free memory the images may take (the rest is the model's).
DEVICE_MEMORY_SHARE = 0.5


def as_uint8_tensor(image) -> torch.Tensor:
    """A decoded RGB image as a (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def images_bytes(dataset: ImageListDataset) -> int:
    """What the decoded images of `dataset` take as uint8 tensors (without decoding them)."""
    total = 0
    for path, _ in dataset.samples:
        image = dataset.cache.images.get(path) if dataset.cache is not None else None
        total += 3 * image.width * image.height if image is not None else 0
    return total


def device_path_refusal(
    device: torch.device,
    augment: str,
    distributed: bool,
    train: ImageListDataset,
    needed_bytes: int,
) -> str | None:
    """Why images_on_device=auto keeps the DataLoader here (None: it does not)."""
    if device.type != "cuda":
        return "the device is the CPU"
    if not train.all_cached():
        return "the decoded-image cache does not hold every training image"
    if augment not in DEVICE_AUGMENTS:
        return f"augment={augment} runs on the CPU"
    if distributed:
        return "torchrun shards the images per process"
    free, _ = torch.cuda.mem_get_info(device)
    if needed_bytes > DEVICE_MEMORY_SHARE * free:
        return (
            f"the images need {needed_bytes / 2**20:.0f} MiB, more than half of the "
            f"{free / 2**20:.0f} MiB free on {device}"
        )
    return None


class Normalizer:
    """uint8-valued float pixels → the normalized input the model takes: x / 255, minus the
    mean, over the std, as one multiply and one add."""

    def __init__(self, mean, std, device: torch.device) -> None:
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t

    def __call__(self, pixels: torch.Tensor, channels_last: bool) -> torch.Tensor:
        batch = torch.addcmul(self.shift, pixels, self.scale)
        return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


class DeviceTrainBatches:
    """The training batches, shuffled and augmented on `device`.

    Order: a RandomSampler on `generator`, after the one draw a DataLoader makes from it per
    epoch (its workers' base seed), so the same seed gives the same order as the DataLoader.
    Augmentation (augment=reference): per image, RandomResizedCrop.get_params and the flip's
    draw, both from torch's global generator on the CPU, as the DataLoader's transforms draw
    them; the crop is resized on the device."""

    def __init__(
        self,
        dataset: ImageListDataset,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        channels_last: bool,
        drop_last: bool,
        image_size: int,
        resize_size: int,
        mean,
        std,
        augment: str,
    ) -> None:
        self.dataset = dataset
        self.batch_size, self.drop_last, self.device = batch_size, drop_last, device
        self.channels_last, self.augment = channels_last, augment
        self.generator = torch.Generator().manual_seed(seed)
        self.sampler = RandomSampler(dataset, generator=self.generator)
        self.images = [
            as_uint8_tensor(dataset.decoded(path)).to(device) for path, _ in dataset.samples
        ]
        self.targets = torch.tensor(dataset.targets, device=device)
        self.crop = transforms.RandomResizedCrop(image_size)  # its scale and ratio ranges
        self.image_size, self.resize_size = image_size, resize_size
        self.normalize = Normalizer(mean, std, device)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        draw_as_a_dataloader_does(self.generator)
        order = list(self.sampler)
        if self.drop_last:
            order = order[: len(self) * self.batch_size]
        # The epoch's order on the device once, so each batch's targets are a slice there.
        order_on_device = torch.tensor(order).to(self.device, non_blocking=True)
        for start in range(0, len(order), self.batch_size):
            indices = order[start : start + self.batch_size]
            pixels = torch.cat([self.augmented(index) for index in indices])
            targets = self.targets[order_on_device[start : start + self.batch_size]]
            yield self.normalize(pixels, self.channels_last), targets

    def augmented(self, index: int) -> torch.Tensor:
        """One image as (1, 3, S, S) float pixels in 0..255: cropped, resized and flipped as
        the reference transforms would."""
        image = self.images[index]
        if self.augment == "none":
            return center_resized(image, self.resize_size, self.image_size)
        top, left, height, width = transforms.RandomResizedCrop.get_params(
            image, self.crop.scale, self.crop.ratio
        )
        crop = image[:, top : top + height, left : left + width].unsqueeze(0).float()
        size = [self.image_size, self.image_size]
        pixels = F.interpolate(
            crop, size=size, mode="bilinear", antialias=True, align_corners=False
        )
        if torch.rand(1) < 0.5:  # RandomHorizontalFlip's draw
            pixels = pixels.flip(-1)
        return pixels.round_().clamp_(0, 255)  # PIL resizes to uint8 pixels


def center_resized(image: torch.Tensor, resize_size: int, image_size: int) -> torch.Tensor:
    """The evaluation transform's geometry on a (3, H, W) uint8 image: the shorter side resized
    to `resize_size`, then the centre `image_size` square, as (1, 3, S, S) pixels in 0..255."""
    height, width = image.shape[-2:]
    if height <= width:
        size = [resize_size, int(resize_size * width / height)]
    else:
        size = [int(resize_size * height / width), resize_size]
    resized = F.interpolate(
        image.unsqueeze(0).float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    top = int(round((size[0] - image_size) / 2.0))
    left = int(round((size[1] - image_size) / 2.0))
    return resized[..., top : top + image_size, left : left + image_size].round_().clamp_(0, 255)


class DeviceEvalBatches(EvalBatchesInOrder):
    """The evaluation batches in order, each image transformed once by the evaluation
    transform on the CPU (the same tensors the DataLoader gives) and kept on `device`."""

    def __init__(
        self,
        dataset: ImageListDataset,
        *,
        batch_size: int,
        device: torch.device,
        channels_last: bool,
    ) -> None:
        self.dataset, self.batch_size = dataset, batch_size
        images = torch.stack([dataset[index][0] for index in range(len(dataset))])
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.images = images.to(device).contiguous(memory_format=memory_format)
        self.targets = torch.tensor(dataset.targets, device=device)

    def batches_in_order(self):
        for start in range(0, len(self.dataset), self.batch_size):
            stop = start + self.batch_size
            yield self.images[start:stop], self.targets[start:stop]

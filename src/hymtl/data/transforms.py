"""The transforms between a decoded image and the model: training's (the augmentation
`augment=` names, conf/augment/) and evaluation's (resize, centre crop, normalise)."""

from __future__ import annotations

import torch
from torchvision import transforms


def train_transform(image_size: int, mean, std, augment: str = "reference", resize_size: int = 256):
    """The training images' transform, as `augment=` names it (conf/augment/)."""
    if augment == "none":
        return eval_transform(resize_size, image_size, mean, std)
    if augment == "trivialaugment":
        # Imported for this augmentation only: transforms.v2 imports torch._dynamo (~0.8 s).
        from torchvision.transforms import v2

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

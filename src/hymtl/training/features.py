"""Feature-extractor mode (model.freeze_backbone=true): run the frozen backbone once over the
un-augmented images, then train only the head on the cached features. Each epoch then costs a
few matrix products instead of a full backbone pass per image."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

from hymtl.data import DataSplits, ImageListDataset, make_loader
from hymtl.training.models import find_head

log = logging.getLogger(__name__)


@torch.no_grad()  # not inference_mode: the features are inputs to a head that is trained
def extract_features(backbone: nn.Module, loader, device, autocast, desc: str):
    backbone.eval()
    features, targets = [], []
    for images, batch_targets in tqdm(loader, desc=desc, leave=False, disable=None):
        with autocast():
            features.append(backbone(images.to(device, non_blocking=True)).float())
        targets.append(batch_targets.to(device))
    return torch.cat(features), torch.cat(targets)


CACHED_AUGMENTATION = "none (cached features of the un-augmented images)"


def applied_augmentation(augment: str, cached_features: bool) -> str:
    """What augmentation the training images actually got (summary.json augmentation_applied):
    augment.name, except on cached features, which are computed once from un-augmented images."""
    return CACHED_AUGMENTATION if cached_features else augment


def warn_augmentation_dropped(augment: str) -> None:
    """One warning per run when the feature cache drops the augmentation the config names."""
    if augment != "none":
        log.warning(
            "augment=%s is not applied: model.freeze_backbone=true with feature_cache=true trains "
            "the head on features of the un-augmented images, computed once; add "
            "feature_cache=false to augment every epoch (a full backbone pass per image)",
            augment,
        )


def cached_feature_loaders(
    model: nn.Module,
    splits: DataSplits,
    batch_size: int,
    num_workers: int,
    seed: int,
    device,
    autocast,
):
    """(head module, train loader, val loader) over features of the frozen backbone.

    Train features come from the un-augmented (val-transform) images: augmentation would make
    every epoch's features different and defeat the cache.
    """
    head_name, head = find_head(model)
    parent_name, _, attr = head_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Identity())
    try:
        plain_train = ImageListDataset(
            splits.train.samples, splits.classes, splits.val.transform, splits.train.cache
        )
        pin = device.type == "cuda"
        loaders = [
            make_loader(dataset, 64, num_workers, False, seed, pin)
            for dataset in (plain_train, splits.val)
        ]
        train_x, train_y = extract_features(model, loaders[0], device, autocast, "features train")
        val_x, val_y = extract_features(model, loaders[1], device, autocast, "features val")
    finally:
        setattr(parent, attr, head)
    log.info("cached backbone features: %s train, %s val", tuple(train_x.shape), tuple(val_x.shape))
    train_loader = make_loader(TensorDataset(train_x, train_y), batch_size, 0, True, seed, False)
    val_loader = make_loader(TensorDataset(val_x, val_y), batch_size, 0, False, seed, False)
    return head, train_loader, val_loader

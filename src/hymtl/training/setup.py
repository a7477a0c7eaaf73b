"""A run's parts, built from its config: the runtime (device, processes, precision, threads),
then data, model, regularizer, optimizer, scheduler, criterion and loaders."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hymtl.config.compose import to_plain_dict
from hymtl.data import DataSplits, ImageListDataset, KeptEvalBatches, make_loader
from hymtl.data.identity import splits_identity
from hymtl.data.on_device import (
    DEVICE_AUGMENTS,
    DeviceEvalBatches,
    DeviceTrainBatches,
    device_path_refusal,
    images_bytes,
)
from hymtl.errors import UserError
from hymtl.training import distributed
from hymtl.training.features import cached_feature_loaders, warn_augmentation_dropped
from hymtl.training.losses import build_criterion
from hymtl.training.regularizers import Regularizer
from hymtl.training.runtime import (
    autocast_for,
    resolve_device,
    resolve_num_workers,
    resolve_precision,
    resolve_threads,
    reuse_freed_memory,
    seed_everything,
)
from hymtl.training.threads import AutoThreads

log = logging.getLogger("hymtl.train")


def build(node, *args, **kwargs):
    """hydra.utils.instantiate, re-raising our own UserError instead of Hydra's wrapper."""
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise


@dataclass
class Runtime:
    """Where and how this process computes: setup_runtime's choices."""

    ranks: distributed.Ranks
    device: torch.device
    precision: str
    autocast: Callable
    num_workers: int
    auto_threads: AutoThreads | None = None  # threads=auto: re-chosen after each epoch


@dataclass
class Parts:
    """Everything the epoch loop works with, built from the config by build_parts."""

    splits: DataSplits
    model: nn.Module
    regularizer: Regularizer
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    step_model: nn.Module  # what a training step calls: the model, its DDP or compiled wrapper
    eval_model: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    channels_last: bool


def setup_runtime(cfg: DictConfig) -> Runtime:
    """Device, processes, precision, threads and determinism for this run."""
    ranks, device = distributed.start(resolve_device(cfg.device))
    if ranks.enabled and cfg.model.freeze_backbone and cfg.feature_cache:
        raise UserError(
            "model.freeze_backbone=true trains only the head, on cached features: run it in one "
            "process (python -m hymtl.train), or add feature_cache=false under torchrun"
        )
    precision = resolve_precision(cfg.precision.value, device, cfg.batch_size)
    threads = resolve_threads(cfg.threads)
    auto_threads = None
    if threads == "auto" and device.type == "cpu":
        auto_threads = AutoThreads.start()
    elif isinstance(threads, int):
        torch.set_num_threads(threads)
    if cfg.reuse_freed_memory and device.type == "cpu":
        reuse_freed_memory()
    # Process-wide switches: set both ways, since sweep jobs can share one process.
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if torch.are_deterministic_algorithms_enabled() != cfg.deterministic:
        # Only when it changes: the call imports torch._inductor and dynamo (~1 s).
        torch.use_deterministic_algorithms(cfg.deterministic)
    torch.backends.cudnn.benchmark = False
    seed_everything(cfg.seed)  # every rank: the same initial weights
    return Runtime(
        ranks,
        device,
        precision,
        autocast_for(device, precision),
        resolve_num_workers(cfg.num_workers, device),
        auto_threads,
    )


def build_parts(cfg: DictConfig, runtime: Runtime) -> Parts:
    """Data, model, regularizer, optimizer, scheduler and loaders, as the config says."""
    splits = build_splits(cfg, runtime.ranks)
    model = build(cfg.model, num_classes=len(splits.classes)).to(runtime.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if runtime.ranks.enabled:
        seed_everything(cfg.seed + runtime.ranks.rank)  # ... but each rank its own augmentations
    regularizer = build_regularizer(cfg, model)
    optimizer = build(cfg.optimizer, _convert_="all")(regularizer.param_groups(model))
    cached_features = cfg.model.freeze_backbone and cfg.feature_cache
    if cached_features:
        # Only the head trains: it runs on backbone features computed once (features.py).
        warn_augmentation_dropped(cfg.augment.name.value)
        step_model, train_loader, val_loader = cached_feature_loaders(
            model,
            splits,
            cfg.batch_size,
            runtime.num_workers,
            cfg.seed,
            runtime.device,
            runtime.autocast,
        )
    else:
        train_loader, val_loader = image_loaders(cfg, splits, runtime)
        step_model = wrap_for_steps(cfg, model, runtime)
    if runtime.auto_threads is not None:
        runtime.auto_threads.settle()  # the load measured over this set-up
    return Parts(
        splits=splits,
        model=model,
        regularizer=regularizer,
        optimizer=optimizer,
        scheduler=build(cfg.scheduler)(optimizer),
        scaler=torch.amp.GradScaler(runtime.device.type, enabled=runtime.precision == "fp16"),
        criterion=build_criterion(cfg.loss, splits.train.targets, len(splits.classes)).to(
            runtime.device
        ),
        step_model=step_model,
        # Under torchrun the loop evaluates the plain module on its val shard: DDP's forward
        # would add collectives, and the shards can differ in their number of batches.
        eval_model=model if runtime.ranks.enabled else step_model,
        train_loader=train_loader,
        val_loader=val_loader,
        channels_last=cfg.channels_last and not cached_features,
    )


def build_splits(cfg: DictConfig, ranks: distributed.Ranks) -> DataSplits:
    """The images, by role, with the identity of the folder they came from."""
    evaluation = to_plain_dict(cfg.evaluation)
    augment = cfg.augment.name.value
    splits = build(cfg.data, seed=cfg.seed, augment=augment, evaluation=evaluation, _convert_="all")
    splits.identity = splits_identity(splits)
    if cfg.batch_size > len(splits.train):
        raise UserError(
            f"batch_size={cfg.batch_size} is larger than the {len(splits.train)} training images; "
            "lower batch_size="
        )
    log.info(
        "data %s: %s, classes %s (%s)",
        splits.root,
        split_sizes(splits, evaluation),
        splits.classes,
        splits.layout,
    )
    changes = recipe_changes(cfg)
    if changes:
        log.info("unlike the reference recipe: %s", ", ".join(changes))
    if ranks.enabled:
        log.info(
            "%d processes x batch %d = global batch %d",
            ranks.world_size,
            cfg.batch_size,
            ranks.world_size * cfg.batch_size,
        )
    return splits


def recipe_changes(cfg: DictConfig) -> list[str]:
    """The training knobs set away from the reference recipe that the data line and the
    config groups in the log do not already say (label smoothing, class weights, augmentation,
    early stopping)."""
    changes = []
    if cfg.loss.label_smoothing:
        changes.append(f"loss.label_smoothing={cfg.loss.label_smoothing}")
    if cfg.loss.class_weights.value != "none":
        changes.append(f"loss.class_weights={cfg.loss.class_weights.value}")
    if cfg.augment.name.value != "reference":
        changes.append(f"augment={cfg.augment.name.value}")
    if cfg.early_stopping.patience is not None:
        stopping = cfg.early_stopping
        changes.append(f"early_stopping.patience={stopping.patience} ({stopping.metric.value})")
    return changes


def build_regularizer(cfg: DictConfig, model: nn.Module) -> Regularizer:
    regularizer = build(cfg.regularizer)
    regularizer.attach(model)
    if regularizer.starts_from_weights and not (cfg.model.pretrained or cfg.model.weights_path):
        log.info(
            "regularizer=%s: w0 is the random initialization (model.pretrained=false)",
            regularizer.name,
        )
    return regularizer


def wrap_for_steps(cfg: DictConfig, model: nn.Module, runtime: Runtime) -> nn.Module:
    """What a training step calls: the model, in DDP under torchrun, compiled if asked."""
    step_model = model
    if runtime.ranks.enabled:
        device = runtime.device
        step_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(step_model) if cfg.compile else step_model


def split_sizes(splits: DataSplits, evaluation: dict) -> str:
    """How many images play each role, for the log: the numbers say which images chose what."""
    if splits.test is None:
        return f"{len(splits.train)} train / {len(splits.val)} val images (val chooses the epoch)"
    protocol = evaluation["protocol"]
    if protocol == "kfold":
        protocol += f" fold {evaluation['fold']} of {evaluation['folds']}"
    return (
        f"{len(splits.train)} train / {len(splits.val)} select (chooses the epoch) / "
        f"{len(splits.test)} test images (evaluation={protocol}, "
        f"split_seed={evaluation['split_seed']}; test used once, after training)"
    )


def image_loaders(cfg: DictConfig, splits: DataSplits, runtime: Runtime):
    """The train and val loaders: DataLoaders, or the batches of images held on the device."""
    drop_single = drops_single_image(cfg, splits, runtime.ranks)
    if images_on_device(cfg, splits, runtime):
        common = {"device": runtime.device, "channels_last": cfg.channels_last}
        data = cfg.data
        train_batches = DeviceTrainBatches(
            splits.train,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            drop_last=drop_single,
            image_size=data.image_size,
            resize_size=data.resize_size,
            mean=list(data.mean),
            std=list(data.std),
            augment=cfg.augment.name.value,
            **common,
        )
        return train_batches, DeviceEvalBatches(splits.val, batch_size=cfg.batch_size, **common)
    return data_loaders(cfg, splits, runtime, drop_single)


def images_on_device(cfg: DictConfig, splits: DataSplits, runtime: Runtime) -> bool:
    """images_on_device: true, false, or auto (on CUDA, where the images fit), logged."""
    choice = cfg.images_on_device
    needed = images_bytes(splits.train) + 4 * 3 * cfg.data.image_size**2 * len(splits.val)
    refusal = device_path_refusal(
        runtime.device, cfg.augment.name.value, runtime.ranks.enabled, splits.train, needed
    )
    if choice == "auto":
        if refusal is None:
            log.info(
                "images on %s: %.0f MiB, augmented there (images_on_device=auto)",
                runtime.device,
                needed / 2**20,
            )
        return refusal is None
    if choice and runtime.ranks.enabled:
        raise UserError("images_on_device=true does not run under torchrun; use auto or false")
    if choice and cfg.augment.name.value not in DEVICE_AUGMENTS:
        raise UserError(
            f"images_on_device=true does augment={'/'.join(DEVICE_AUGMENTS)} only; "
            f"augment={cfg.augment.name.value} needs images_on_device=false or auto"
        )
    return bool(choice)


def drops_single_image(cfg: DictConfig, splits: DataSplits, ranks: distributed.Ranks) -> bool:
    """Whether each epoch skips the last training image: a last batch of one image cannot be
    normalized by BatchNorm in training mode (a model whose feature maps end at 1x1 crashes)."""
    per_process = len(splits.train)
    if ranks.enabled:
        per_process = -(-len(splits.train) // ranks.world_size)  # DistributedSampler pads
    drop_single = per_process % cfg.batch_size == 1 and cfg.batch_size > 1
    if drop_single:
        log.info(
            "%d training images at batch_size=%d leave a last batch of 1 image: it is skipped "
            "each epoch (BatchNorm needs 2)",
            per_process,
            cfg.batch_size,
        )
    return drop_single


def data_loaders(cfg: DictConfig, splits: DataSplits, runtime: Runtime, drop_single: bool):
    ranks = runtime.ranks
    pin = runtime.device.type == "cuda"
    train_sampler = None
    if ranks.enabled:
        train_sampler = DistributedSampler(
            splits.train, ranks.world_size, ranks.rank, shuffle=True, seed=cfg.seed
        )
    train_loader = make_loader(
        splits.train,
        cfg.batch_size,
        runtime.num_workers,
        True,
        cfg.seed,
        pin,
        train_sampler,
        drop_last=drop_single,
    )
    val_shard = distributed.val_shard(splits.val, ranks)
    if keeps_eval_batches(cfg, val_shard, runtime):
        return train_loader, KeptEvalBatches(val_shard, cfg.batch_size)
    val_loader = make_loader(val_shard, cfg.batch_size, runtime.num_workers, False, cfg.seed, pin)
    return train_loader, val_loader


def keeps_eval_batches(cfg: DictConfig, val: Dataset, runtime: Runtime) -> bool:
    """Whether the val images are transformed once and kept (KeptEvalBatches): where the loader
    has no workers, every val image is in the decoded-image cache and the transformed ones fit
    in what is left of its limit (logged)."""
    if runtime.num_workers or not isinstance(val, ImageListDataset) or not val.all_cached():
        return False
    size = 4 * 3 * cfg.data.image_size**2 * len(val)  # float32 tensors
    if not val.cache.reserve(size):
        return False
    log.info("val images: transformed once and kept, %.0f MiB", size / 2**20)
    return True

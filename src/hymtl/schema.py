"""Typed schema behind the YAML in conf/: a misspelled key or a wrong type fails at start-up.

Each dataclass mirrors one config group; the YAML files only fill in values. Registered in
Hydra's ConfigStore by `register_configs()`, which `hymtl.train` calls before composing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class PenalizedParams(Enum):
    all = "all"  # every trainable parameter, as the reference did
    weights = "weights"  # skip biases and normalization layers (the usual modern choice)


class Precision(Enum):
    auto = (
        "auto"  # bf16 where the hardware does it natively (CUDA, AVX512-BF16/AMX CPUs), else fp32
    )
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass
class DataConfig:
    _target_: str = "hymtl.data.load_data"
    name: str = MISSING
    root: str = MISSING
    train_dir: str = "train"
    val_dir: str = "val"
    # Used only when `root` has no train/ and val/ folders: a seeded, stratified split.
    val_fraction: float = 0.2
    image_size: int = 224
    resize_size: int = 256
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    # Decodable images with fewer distinct colours than this are placeholders ("image not
    # found" GIFs), not photos, and are skipped. 0 keeps every decodable image.
    min_colors: int = 64
    # Keep the images decoded at start-up in memory, so epochs skip JPEG decoding (same pixels,
    # same augmentation; only faster). Capped: past the cap, images are decoded on access.
    cache_images: bool = True
    cache_max_mb: float = 4096


@dataclass
class ModelConfig:
    _target_: str = "hymtl.models.build_model"
    name: str = MISSING  # any torchvision classification model name
    pretrained: bool = True
    weights: str = "DEFAULT"  # torchvision weights enum member, e.g. IMAGENET1K_V1
    weights_path: str | None = (
        None  # local state dict (full or backbone-only); wins over pretrained
    )
    freeze_backbone: bool = False


@dataclass
class RegularizerConfig:
    _target_: str = "hymtl.regularizers.Regularizer"
    name: str = MISSING
    l1: float = 0.0  # loss += l1 * sum|w|
    l2: float = 0.0  # loss += l2 * sum w^2
    weight_decay: float = 0.0  # handed to the optimizer, not added to the loss
    penalize: PenalizedParams = PenalizedParams.all


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class AdamWConfig:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 0.001
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class StepLRConfig:
    _target_: str = "torch.optim.lr_scheduler.StepLR"
    _partial_: bool = True
    step_size: int = 7
    gamma: float = 0.1


@dataclass
class CosineConfig:
    _target_: str = "torch.optim.lr_scheduler.CosineAnnealingLR"
    _partial_: bool = True
    T_max: int = "${epochs}"  # type: ignore[assignment]  (interpolation, resolved to an int)
    eta_min: float = 0.0


@dataclass
class ConstantLRConfig:
    # "No scheduler" is a scheduler that keeps the learning rate: one code path for all.
    _target_: str = "torch.optim.lr_scheduler.ConstantLR"
    _partial_: bool = True
    factor: float = 1.0
    total_iters: int = 0


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    regularizer: RegularizerConfig = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    lambda_l1: float = 0.03
    lambda_l2: float = 0.01
    epochs: int = 25
    batch_size: int = 4
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # DataLoader workers; null = auto: 0 on CPU (the model needs every core, and images are
    # decoded once at start-up), min(8, cores) on CUDA (keep the GPU fed).
    num_workers: int | None = None
    # Torch CPU threads; null = torch's default, or cores // n_jobs under the joblib launcher.
    threads: int | None = None
    precision: Precision = Precision.auto
    # glibc: keep freed memory for reuse instead of page-faulting it back in every step (CPU).
    reuse_freed_memory: bool = True
    channels_last: bool = True  # NHWC activations: faster convolutions on CPU (oneDNN) and GPU
    compile: bool = (
        False  # torch.compile the model (pays off only for long runs: ~1 min to compile)
    )
    # With model.freeze_backbone=true: train the head on backbone features computed once from
    # un-augmented images (seconds), or, false, run the frozen backbone on augmented images
    # every epoch like the PyTorch tutorial's fixed feature extractor.
    feature_cache: bool = True
    # Bitwise-repeatable kernels (torch.use_deterministic_algorithms); slower on CUDA.
    deterministic: bool = False
    # RUN_DIR of an interrupted run: continue it from RUN_DIR/last.pt with its own config.
    resume: str | None = None
    # A new run into a directory that holds another run moves that run's files into
    # DIR/replaced-<time>/ first, instead of refusing (nothing is deleted).
    overwrite: bool = False
    # Prediction grid size (images drawn from the val split).
    grid_images: int = 16


def register_configs() -> None:
    # Schemas live in their own `schema/` groups so they never show up as user-facing options.
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="schema/data", name="data", node=DataConfig)
    cs.store(group="schema/model", name="model", node=ModelConfig)
    cs.store(group="schema/regularizer", name="regularizer", node=RegularizerConfig)
    cs.store(group="schema/optimizer", name="sgd", node=SGDConfig)
    cs.store(group="schema/optimizer", name="adamw", node=AdamWConfig)
    cs.store(group="schema/scheduler", name="steplr", node=StepLRConfig)
    cs.store(group="schema/scheduler", name="cosine", node=CosineConfig)
    cs.store(group="schema/scheduler", name="constant", node=ConstantLRConfig)

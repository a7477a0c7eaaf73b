"""Typed schema behind the YAML in conf/: a misspelled key or a wrong type fails at start-up.

Each dataclass mirrors one config group. Every value is written once, in one of two homes
(Hydra's structured-config schema pattern), never both; tests/test_defaults_once.py checks it:

- the root config (`Config`): types only, every value MISSING here; the values live in
  conf/config.yaml, where `hymtl train --help` reads them with their comments;
- a group option (DataConfig, ModelConfig, SGDConfig, ...): the types and the defaults the
  options share are here; conf/GROUP/OPTION.yaml writes only what that option sets itself
  (its name, or a value that differs). A key every option sets is MISSING here.

Registered in Hydra's ConfigStore by `register_configs()`, which `hymtl.train` calls before
composing.
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


class Checkpoints(Enum):
    full = "full"  # best.pt like last.pt: weights, optimizer, scheduler and random states
    lean = "lean"  # best.pt: the weights and what describes them; last.pt as full


class Precision(Enum):
    auto = "auto"  # bf16 where the hardware does it natively (CUDA, AVX512-BF16/AMX), else fp32
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
    # MiB, or auto: half of the memory available at start-up after 2 GiB for the model
    # (hymtl.data.resolve_cache_mb). A number or "auto", checked by config.check_config.
    cache_max_mb: Any = "auto"


@dataclass
class ModelConfig:
    _target_: str = "hymtl.training.models.build_model"
    name: str = MISSING  # any torchvision classification model name
    pretrained: bool = True
    weights: str = MISSING  # torchvision weights enum member, e.g. IMAGENET1K_V1, or DEFAULT
    weights_path: str | None = (
        None  # local state dict (full or backbone-only); wins over pretrained
    )
    freeze_backbone: bool = False


@dataclass
class RegularizerConfig:
    _target_: str = "hymtl.training.regularizers.Regularizer"
    name: str = MISSING
    l1: float = 0.0  # loss += l1 * sum|w|
    l2: float = 0.0  # loss += l2 * sum w^2
    weight_decay: float = 0.0  # handed to the optimizer, not added to the loss
    # l2sp (toward the starting point): loss += alpha/2·Σ(w - w0)² over parameters that have
    # a starting value (the backbone) + beta/2·Σw² over the new head (conf/regularizer/l2sp.yaml)
    alpha: float = 0.0
    beta: float = 0.0
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


class Protocol(Enum):
    reference = "reference"  # best epoch chosen on val/ and reported on val/ (selection-biased)
    holdout = "holdout"  # epoch chosen on a split of train/; val/ is the test set, used once
    kfold = "kfold"  # stratified k-fold over all images; epoch chosen inside each fold


@dataclass
class EvaluationConfig:
    """How the reported number is estimated (conf/evaluation/, hymtl/data/splits.py)."""

    protocol: Protocol = MISSING
    # holdout, kfold: the share of the training images held back to choose the epoch (stratified)
    select_fraction: float = 0.2
    folds: int = 5  # kfold: number of folds
    fold: int = 0  # kfold: which fold is the test set (0 .. folds-1)
    # holdout, kfold: seeds the partition only (never the training seed), so every regularizer
    # and every training seed sees the same folds; another value draws a new partition
    split_seed: int = 0


class ClassWeights(Enum):
    none = "none"
    balanced = "balanced"  # n / (classes · count): rare classes weigh more, for imbalanced folders


class StopMetric(Enum):
    val_acc = "val_acc"
    val_loss = "val_loss"


@dataclass
class LossConfig:
    label_smoothing: float = MISSING
    class_weights: ClassWeights = MISSING


@dataclass
class EarlyStoppingConfig:
    patience: int | None = MISSING
    metric: StopMetric = MISSING


class Augment(Enum):
    reference = "reference"
    none = "none"
    trivialaugment = "trivialaugment"


@dataclass
class AugmentConfig:
    name: Augment = MISSING


@dataclass
class LoggerConfig:
    """Trackers that mirror the run dir (hymtl/tracking/__init__.py). Off unless conf/logger/*.yaml
    switches them on (docs/tracking.md)."""

    mlflow: bool = False
    tensorboard: bool = False
    tracking_uri: str | None = None  # logger=mlflow sets it (conf/logger/mlflow.yaml)
    # null: experiment='s name, else hparams_search='s, else the sweep dir, else hymtl
    experiment_name: str | None = None
    log_checkpoints: bool = False  # true: best.pt and last.pt uploaded too (tens of MB per run)


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
    """The root config's types, and no values: those (the reference recipe) and what each knob
    means are written once, in conf/config.yaml, the file `hymtl train --help` lists. A key a
    run recorded before it existed is MISSING when that run resumes, and so gets today's value
    from conf/config.yaml (hymtl/run/resume.py)."""

    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    regularizer: RegularizerConfig = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    lambda_l1: float = MISSING
    lambda_l2: float = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    seed: int = MISSING
    device: str = MISSING
    num_workers: int | None = MISSING
    images_on_device: Any = MISSING  # auto, true or false (checked by run/checks.py)
    threads: Any = MISSING  # auto, a number >= 1, or null (checked by run/checks.py)
    precision: Precision = MISSING
    reuse_freed_memory: bool = MISSING
    channels_last: bool = MISSING
    compile: bool = MISSING
    feature_cache: bool = MISSING
    deterministic: bool = MISSING
    resume: str | None = MISSING
    resume_allow_data_change: bool = MISSING
    overwrite: bool = MISSING
    checkpoints: Checkpoints = MISSING
    augment: AugmentConfig = MISSING
    evaluation: EvaluationConfig = MISSING
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    grid_images: int = MISSING


# hymtl predict and hymtl evaluate: small configs whose defaults live here, beside their types
# (there is no YAML for them: their keys are what `--help` and `--cfg job` show).
@dataclass
class PredictConfig:
    ckpt: str = MISSING  # RUN_DIR/best.pt, or a file hymtl export wrote (TorchScript, .onnx)
    inputs: str = MISSING  # an image file or a folder of images (searched like training's)
    out: str | None = None  # null: a new RUN_DIR/predict/<time>/, beside the checkpoint
    device: str = "auto"  # auto = CUDA if present, else CPU; or cpu, cuda, cuda:N
    batch_size: int = 32
    overwrite: bool = False  # with out=: replace its predictions.csv/.png (never a run's files)
    # fp32: exact and repeatable, what an exported file computes; auto: the run's own precision
    precision: Precision = Precision.fp32


@dataclass
class EvaluateData:
    root: str = MISSING  # ROOT/SPLIT/CLASS/*.jpg, or ROOT/CLASS/*.jpg


@dataclass
class EvaluateConfig:
    ckpt: str = MISSING  # RUN_DIR/best.pt, or a file hymtl export wrote
    data: EvaluateData = field(default_factory=EvaluateData)
    split: str = "val"  # the folder under data.root; without it, data.root itself
    out: str | None = None  # null: RUN_DIR/evaluate, beside the checkpoint
    device: str = "auto"
    batch_size: int = 32
    # fp32: exact and repeatable, what an exported file computes; auto: the run's own precision
    precision: Precision = Precision.fp32


class ExportFormat(Enum):
    torchscript = "torchscript"
    onnx = "onnx"  # needs the hymtl[onnx] extra


@dataclass
class ExportConfig:
    ckpt: str = MISSING  # RUN_DIR/best.pt
    format: ExportFormat = ExportFormat.torchscript
    out: str | None = None  # null: RUN_DIR/export/model.torchscript.pt or model.onnx
    overwrite: bool = False  # replace an existing file (never a run's own files)


def register_configs() -> None:
    # Schemas live in their own `schema/` groups so they never show up as user-facing options.
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="schema/data", name="data", node=DataConfig)
    cs.store(group="schema/model", name="model", node=ModelConfig)
    cs.store(group="schema/regularizer", name="regularizer", node=RegularizerConfig)
    cs.store(group="schema/evaluation", name="evaluation", node=EvaluationConfig)
    cs.store(group="schema/optimizer", name="sgd", node=SGDConfig)
    cs.store(group="schema/optimizer", name="adamw", node=AdamWConfig)
    cs.store(group="schema/scheduler", name="steplr", node=StepLRConfig)
    cs.store(group="schema/scheduler", name="cosine", node=CosineConfig)
    cs.store(group="schema/scheduler", name="constant", node=ConstantLRConfig)

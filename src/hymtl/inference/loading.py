"""A trained model back from its checkpoint, ready for hymtl.predict and hymtl.evaluate."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from hymtl.config.schema import DataConfig
from hymtl.data import eval_transform, is_utf8, not_regular_reason
from hymtl.errors import UserError, display_path, one_line
from hymtl.inference.exported import read_exported, unreadable_export
from hymtl.run.artifacts import load_checkpoint
from hymtl.training.models import build_model
from hymtl.training.runtime import autocast_for, resolve_device, resolve_precision

# What predict and evaluate read from a checkpoint's config, checked before anything is built.
REQUIRED_DATA_KEYS = ("image_size", "resize_size", "mean", "std")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    classes: list[str]
    config: dict  # the training run's config, plain
    transform: object  # the run's evaluation transform
    device: torch.device
    autocast: object
    channels_last: bool
    min_colors: int  # training's placeholder rule, so predict and evaluate skip the same files
    precision: str = "fp32"  # what the model runs in: fp32, bf16 or fp16 (autocast)


# precision= of predict and evaluate: auto is the run's own (its config's precision, resolved
# for this device as training resolved it); exported files always run in fp32.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def precision_name(precision) -> str:
    """A precision= value as its name (the schema's Precision enum, or a plain string)."""
    name = getattr(precision, "value", precision)
    if name not in PRECISIONS:
        raise UserError(f"precision={name} is not one of {', '.join(PRECISIONS)}")
    return name


def check_checkpoint(checkpoint, where: str) -> None:
    """Refuse, in one line, a file that loads but is not a checkpoint hymtl.train wrote."""
    not_ours = f"{where} is not a hymtl checkpoint (best.pt or last.pt of a run)"
    if not isinstance(checkpoint, dict):
        raise UserError(f"{not_ours}: it holds a {type(checkpoint).__name__}, not a dict")
    missing = [key for key in ("model", "config", "class_names") if key not in checkpoint]
    if missing:
        raise UserError(f"{not_ours}: no {', '.join(missing)} in it")
    config, classes = checkpoint["config"], checkpoint["class_names"]
    if not isinstance(config, dict):
        raise UserError(f"{not_ours}: its config is a {type(config).__name__}, not a dict")
    model_cfg, data_cfg = config.get("model"), config.get("data")
    if not isinstance(model_cfg, dict) or not isinstance(model_cfg.get("name"), str):
        raise UserError(f"{not_ours}: its config has no model.name")
    if not isinstance(data_cfg, dict) or not set(REQUIRED_DATA_KEYS) <= set(data_cfg):
        raise UserError(f"{not_ours}: its config.data lacks one of {list(REQUIRED_DATA_KEYS)}")
    sizes = [data_cfg["image_size"], data_cfg["resize_size"], data_cfg.get("min_colors", 0)]
    channel_stats = [data_cfg["mean"], data_cfg["std"]]
    if not all(isinstance(size, int) and size >= 0 for size in sizes) or not all(
        isinstance(stat, list) and len(stat) == 3 and all(isinstance(v, int | float) for v in stat)
        for stat in channel_stats
    ):
        raise UserError(f"{not_ours}: its config.data sizes, mean or std are not numbers")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or not all(isinstance(name, str) and is_utf8(name) for name in classes)
    ):
        raise UserError(f"{not_ours}: class_names is not a list of two or more class names")
    if not isinstance(checkpoint["model"], dict):
        raise UserError(f"{not_ours}: its model entry is not a state dict")


def load_exported_model(path: Path, device_name: str, precision="fp32") -> LoadedModel | None:
    """A model `hymtl export` wrote (TorchScript or ONNX, with its metadata), or None for other
    files. ONNX models run on the CPU whatever `device_name` says (onnxruntime's CPU provider).
    Exported models run in fp32 (auto: the precision they were exported in, fp32)."""
    exported = read_exported(path)
    if exported is None:
        return None
    model, metadata = exported
    if precision_name(precision) not in ("fp32", "auto"):
        raise UserError(
            f"ckpt={display_path(path)} is a model hymtl export wrote, which runs in fp32; "
            "use precision=fp32 (or the run's checkpoint for another precision)"
        )
    prep = metadata["preprocessing"]
    on_cpu = metadata["format"] == "onnx"
    device = torch.device("cpu") if on_cpu else resolve_device(device_name)
    config = {"model": {"name": metadata["model"]}, "data": {"image_size": prep["center_crop"]}}
    return LoadedModel(
        (model if on_cpu else model.to(device)).eval(),
        metadata["classes"],
        config,
        eval_transform(prep["resize"], prep["center_crop"], prep["mean"], prep["std"]),
        device,
        autocast_for(device, "fp32"),
        False,
        metadata["min_colors"],
        "fp32",
    )


def checkpoint_file(given: str | Path, where: str) -> Path:
    """`ckpt=` as a path to a regular file, or one line saying what it is instead (a folder,
    nothing, a FIFO or device: never opened, a FIFO would block)."""
    path = Path(given).expanduser()
    if path.is_dir():
        raise UserError(f"{where} is a folder; pass the checkpoint file, e.g. {where}/best.pt")
    special = not_regular_reason(str(path))
    if special:
        raise UserError(f"{where} is {special}; pass ckpt=RUN_DIR/best.pt")
    if not path.is_file():
        raise UserError(f"{where} does not exist; pass ckpt=RUN_DIR/best.pt")
    return path


def read_checkpoint(path: Path, where: str) -> dict:
    """The checkpoint at `path`, loaded with weights_only=True, and checked (check_checkpoint);
    a file it cannot be is one line: unsafe, damaged export, not a checkpoint."""
    try:
        checkpoint = load_checkpoint(path)
    except Exception as error:  # torch.load raises many types for files it cannot read
        unsafe = isinstance(error, pickle.UnpicklingError)
        damaged = None if unsafe and "Unsupported global" in str(error) else unreadable_export(path)
        if damaged is not None:
            raise damaged from None
        if unsafe:  # weights_only=True met an object that could run code
            raise UserError(f"{where} cannot be loaded safely ({one_line(error)})") from None
        raise UserError(f"{where} is not a PyTorch checkpoint ({one_line(error)})") from None
    check_checkpoint(checkpoint, where)
    return checkpoint


def load_trained_model(
    checkpoint_path: str | Path, device_name: str = "auto", precision="auto"
) -> LoadedModel:
    """A run's checkpoint (best.pt, last.pt) or a model `hymtl export` wrote, ready to predict,
    in `precision` (fp32, bf16, fp16; auto: the run's own, as training resolved it here)."""
    precision = precision_name(precision)
    where = f"ckpt={display_path(checkpoint_path)}"
    path = checkpoint_file(checkpoint_path, where)
    exported = load_exported_model(path, device_name, precision)
    if exported is not None:
        return exported
    checkpoint = read_checkpoint(path, where)
    config, classes = checkpoint["config"], checkpoint["class_names"]
    model_cfg, data_cfg = config["model"], config["data"]
    device = resolve_device(device_name)
    model = build_model(model_cfg["name"], num_classes=len(classes), pretrained=False)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:  # missing, unexpected or wrongly shaped tensors
        raise UserError(
            f"{where}: its weights do not fit model {model_cfg['name']} with {len(classes)} "
            f"classes ({one_line(error)})"
        ) from None
    channels_last = bool(config.get("channels_last", False))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device).eval()
    if precision == "auto":
        precision = config.get("precision", "fp32")
    precision = resolve_precision(precision, device)
    transform = eval_transform(
        data_cfg["resize_size"], data_cfg["image_size"], data_cfg["mean"], data_cfg["std"]
    )
    return LoadedModel(
        model,
        classes,
        config,
        transform,
        device,
        autocast_for(device, precision),
        channels_last,
        # Checkpoints written before min_colors existed were trained with its default.
        data_cfg.get("min_colors", DataConfig.min_colors),
        precision,
    )

"""A trained model back from its checkpoint, ready for hymtl.predict and hymtl.evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hymtl import UserError
from hymtl.artifacts import load_checkpoint
from hymtl.config import resolve_device
from hymtl.data import eval_transform
from hymtl.models import build_model
from hymtl.runtime import autocast_for, resolve_precision


@dataclass
class LoadedModel:
    model: torch.nn.Module
    classes: list[str]
    config: dict  # the training run's config, plain
    transform: object  # the run's evaluation transform
    device: torch.device
    autocast: object
    channels_last: bool


def load_trained_model(checkpoint_path: str | Path, device_name: str = "auto") -> LoadedModel:
    path = Path(checkpoint_path).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt={checkpoint_path} does not exist; pass ckpt=RUN_DIR/best.pt")
    try:
        checkpoint = load_checkpoint(path)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0]
        raise UserError(f"ckpt={checkpoint_path} cannot be loaded safely ({first_line})") from None
    if not {"model", "config", "class_names"} <= set(checkpoint):
        raise UserError(f"ckpt={checkpoint_path} is not a hymtl checkpoint (best.pt or last.pt)")
    config, classes = checkpoint["config"], checkpoint["class_names"]
    model_cfg, data_cfg = config["model"], config["data"]
    device = resolve_device(device_name)
    model = build_model(model_cfg["name"], num_classes=len(classes), pretrained=False)
    model.load_state_dict(checkpoint["model"])
    channels_last = bool(config.get("channels_last", False))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device).eval()
    precision = resolve_precision(config.get("precision", "fp32"), device)
    transform = eval_transform(
        data_cfg["resize_size"], data_cfg["image_size"], data_cfg["mean"], data_cfg["std"]
    )
    return LoadedModel(
        model, classes, config, transform, device, autocast_for(device, precision), channels_last
    )


def parse_key_values(argv: list[str], required: tuple[str, ...], usage: str) -> dict:
    """`key=value` arguments, like the training CLI's overrides."""
    if any(arg in ("-h", "--help") for arg in argv):
        print(f"usage: {usage}")
        raise SystemExit(0)
    bad = [arg for arg in argv if "=" not in arg]
    if bad:
        raise UserError(f"expected key=value arguments, got {bad}; usage: {usage}")
    values = OmegaConf.to_container(OmegaConf.from_dotlist(argv))
    missing = [key for key in required if key not in values]
    if missing:
        raise UserError(f"missing {', '.join(k + '=' for k in missing)}; usage: {usage}")
    return values

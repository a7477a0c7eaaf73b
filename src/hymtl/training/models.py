"""torchvision classification models by name, with ImageNet or local weights and a new head."""

from __future__ import annotations

import logging
import pickle
import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

from hymtl import UserError

log = logging.getLogger(__name__)


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classification layer: the last nn.Linear (resnet `fc`, mobilenet `classifier.1`, ...)."""
    linears = [
        (name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)
    ]
    if not linears:
        raise UserError(f"{type(model).__name__} has no nn.Linear head to replace")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Swap the last Linear for a fresh one with `num_classes` outputs; returns its name."""
    name, old = find_head(model)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return name


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a plain state-dict file or a checkpoint holding one under
    `model`/`state_dict`. Loaded with weights_only=True: files that would run code are refused."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise UserError(f"model.weights_path={path} {what}; give a .pth/.pt state dict file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0].split(". ")[0]
        raise UserError(
            f"refused to load {path}: it is not a plain tensor checkpoint and could run code "
            f"when unpickled ({first_line})"
        ) from None
    except Exception as error:
        raise UserError(
            f"{path} is not a PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from None
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise UserError(f"{path} does not hold a state dict (name → tensor)")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def load_local_weights(model: nn.Module, path: str | Path, head_name: str) -> None:
    """Load a full or backbone-only state dict. Head tensors may be missing or shaped for
    another number of classes (the head stays freshly initialised); any other mismatch is an
    error naming the offending keys."""
    state = read_state_dict(path)
    expected = model.state_dict()
    head_prefix = head_name + "."
    is_head = lambda key: key.startswith(head_prefix)  # noqa: E731
    skipped_head = [
        k for k, v in state.items() if is_head(k) and k in expected and v.shape != expected[k].shape
    ]
    for key in skipped_head:
        del state[key]
    missing = [k for k in expected if k not in state and not is_head(k)]
    unexpected = [k for k in state if k not in expected]
    misshapen = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or misshapen:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", misshapen),
        ):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise UserError(
            f"model.weights_path={path} does not fit this model: {'; '.join(parts)}; "
            "is it for another architecture? choose the matching model=..."
        )
    model.load_state_dict(state, strict=False)
    head_loaded = any(is_head(k) for k in state)
    log.info(
        "loaded %d tensors from %s; head %s %s",
        len(state),
        path,
        head_name,
        "loaded too" if head_loaded else "freshly initialised",
    )


def load_torchvision_weights(model: nn.Module, name: str, weights: str) -> None:
    try:
        weights_enum = torchvision.models.get_model_weights(name)[weights]
    except KeyError:
        options = [w.name for w in torchvision.models.get_model_weights(name)] + ["DEFAULT"]
        raise UserError(f"model.weights={weights} is not one of {options} for {name}") from None
    try:
        state = weights_enum.get_state_dict(progress=True, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        reason = str(getattr(error, "reason", error)).splitlines()[0]
        raise UserError(
            f"could not download {name} {weights_enum.name} weights from {weights_enum.url} "
            f"({reason}); offline? pass model.weights_path=/path/to/weights.pth or "
            f"model.pretrained=false (cache: {torch.hub.get_dir()}/checkpoints)"
        ) from None
    model.load_state_dict(state)
    log.info("loaded torchvision %s weights for %s", weights_enum.name, name)


def build_model(
    name: str,
    num_classes: int,
    pretrained: bool = True,
    weights: str = "DEFAULT",
    weights_path: str | None = None,
    freeze_backbone: bool = False,
) -> nn.Module:
    """A torchvision model by name with a `num_classes` head.

    weights_path (a local file) wins over pretrained (torchvision's download, cached in the
    torch hub dir). freeze_backbone trains the new head only (feature-extractor mode).
    """
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise UserError(
            f"model.name={name} is not a torchvision classification model; "
            f"try one of resnet18, resnet50, mobilenet_v2, efficientnet_b0, ..."
        )
    model = torchvision.models.get_model(name, weights=None)
    if weights_path:
        head_name = replace_head(model, num_classes)
        load_local_weights(model, weights_path, head_name)
    else:
        if pretrained:
            load_torchvision_weights(model, name, weights)
        head_name = replace_head(model, num_classes)
    if freeze_backbone:
        for param_name, param in model.named_parameters():
            param.requires_grad = param_name.startswith(head_name + ".")
    return model

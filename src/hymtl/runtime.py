"""Where and how the arithmetic runs: seeding, precision (autocast), memory format."""

from __future__ import annotations

import contextlib
import functools
import random
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_for(device: torch.device, precision: str):
    """A zero-argument context-manager factory: autocast for bf16/fp16, nothing for fp32."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtypes[precision])


def to_device(tensor: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    if channels_last and tensor.dim() == 4:
        return tensor.to(device, non_blocking=True, memory_format=torch.channels_last)
    return tensor.to(device, non_blocking=True)

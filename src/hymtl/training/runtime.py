"""Every runtime choice, resolved in one place: the device, DataLoader workers, threads,
precision (autocast), seeding, memory format and allocator settings."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import os
import random
import threading
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig

from hymtl import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device={name} but CUDA is not available here; use device=cpu or device=auto"
        )
    return device


def resolve_num_workers(num_workers: int | None, device: torch.device) -> int:
    if num_workers is not None:
        return num_workers
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


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


# Below this batch size, training on CUDA runs faster in fp32 (TF32 convolutions) than under
# autocast, whose casts add kernels to steps that are short already: at batch 4 on an H200,
# fp32 trains 1.26x faster than bf16 (docs/performance.md, "On a GPU"). Not measured between
# 4 and 32; precision=bf16 chooses autocast at any size.
CUDA_AUTOCAST_MIN_BATCH = 32


def resolve_precision(precision: str, device: torch.device, batch_size: int | None = None) -> str:
    """precision=auto: on CUDA bf16 (fp16 where bf16 is not native), fp32 for training batches
    under CUDA_AUTOCAST_MIN_BATCH; on the CPU bf16 where it is native, else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        if batch_size is not None and batch_size < CUDA_AUTOCAST_MIN_BATCH:
            return "fp32"
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


def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of handing it back to the OS.

    By default glibc serves each multi-MB activation tensor from a fresh mmap and unmaps it on
    free, so every training step faults in (and zeroes) the same memory again: ~2500 page faults
    per ResNet-18 step at batch 4, about 2% of CPU throughput (scripts/bench.py --ablation).
    Process-wide and one-way (glibc has no "restore defaults"); the cost is that the process
    keeps its peak heap. False where glibc is absent (macOS, Windows, musl)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 1 << 30) and mallopt(m_trim_threshold, 1 << 30))


def resolve_threads(threads: int | str | None) -> int | str | None:
    """Torch threads for this job: as configured (a number); or, when a launcher runs jobs side
    by side on this machine (joblib's n_jobs, submitit_local's array_parallelism, at most the
    sweep's number of jobs), cores // jobs side by side, so the jobs do not oversubscribe the CPU;
    likewise cores // processes under torchrun (which would otherwise leave each process 1
    thread); on SLURM, the job's cpus_per_task. Else `threads` as given: "auto" (chosen from
    the machine's load, hymtl.training.threads) or None (torch's default: all cores)."""
    if isinstance(threads, int) and not isinstance(threads, bool):
        return threads
    split = launcher_threads()
    return threads if split is None else split


def launcher_threads() -> int | None:
    """The threads of one of several processes or jobs side by side (resolve_threads)."""
    cores = os.cpu_count() or 1
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if processes > 1:
        return max(1, cores // processes)
    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    target = str(launcher.get("_target_", "")).lower()
    if target.endswith("slurmlauncher"):
        return launcher.get("cpus_per_task") or None
    if "joblib" in target:
        n_jobs = launcher.get("n_jobs") or 1
        side_by_side = cores if n_jobs < 0 else n_jobs  # joblib: -1 means one job per core
    elif target.endswith("locallauncher"):  # submitit_local: the whole array at once
        side_by_side = launcher.get("array_parallelism") or cores
    else:
        return None
    # Set by the sweep's start (hymtl.run.callbacks.check_launcher): fewer jobs than slots.
    jobs = int(os.environ.get("HYMTL_SWEEP_JOBS", 0))
    if jobs:
        side_by_side = min(side_by_side, jobs)
    return max(1, cores // side_by_side)


def capture_rng(loader_generator: torch.Generator) -> dict:
    """Every random stream the loop draws from, as plain types and tensors (weights_only-safe)."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss],
        "python": random.getstate(),
        "loader": loader_generator.get_state(),
    }


def restore_rng(state: dict, loader_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    random.setstate(state["python"])
    loader_generator.set_state(state["loader"])


# What the end of a run draws and scores with (~1 s to import); scikit-learn's confusion matrix
# display imports pyplot when it draws.
END_OF_RUN_IMPORTS = ("sklearn.metrics", "hymtl.training.plots", "matplotlib.pyplot")


def import_in_background(modules: tuple[str, ...]) -> None:
    """Import `modules` in a daemon thread, so the code that needs them later does not wait."""

    def run() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # whoever needs it imports it again and reports the error
                return

    threading.Thread(target=run, name="hymtl-imports", daemon=True).start()

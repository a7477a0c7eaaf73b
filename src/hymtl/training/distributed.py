"""One run on several processes: `torchrun --nproc_per_node=N -m hymtl.train [overrides]`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them (plain `python -m hymtl.train`)
everything here is a no-op and the loop runs exactly as it does single-process. Under torchrun:
each process trains on its own shard of the training set (DistributedSampler) with
`batch_size` images per step (the global batch is batch_size x N, as in torchvision's
references), DistributedDataParallel averages the gradients, each process evaluates a strided
shard of the val set and the per-image results are gathered back into val-set order, and only
rank 0 writes the run dir.
"""

from __future__ import annotations

import atexit
import logging

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from hymtl.training.ranks import Ranks, hydra_output_dir, launched_ranks

__all__ = ["Ranks", "hydra_output_dir", "launched_ranks", "start", "stop"]


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group (once per process) and pick this rank's device:
    gloo on CPU, NCCL with one GPU per local rank on CUDA."""
    ranks = launched_ranks()
    if not ranks.enabled:
        return ranks, device
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(stop)
    if not ranks.is_main:
        # One voice: rank 0 logs progress and warnings (every rank would repeat the same data
        # warnings); the others speak only of errors.
        logging.getLogger("hymtl").setLevel(logging.ERROR)
    return ranks, device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def val_shard(dataset: Dataset, ranks: Ranks) -> Dataset:
    """Every ranks.world_size-th image from ranks.rank on: shards that cover the val set once,
    without the padding DistributedSampler adds (which would count some images twice)."""
    if not ranks.enabled:
        return dataset
    return Subset(dataset, range(ranks.rank, len(dataset), ranks.world_size))


def sum_across_ranks(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    if not ranks.enabled:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def sync_buffers(model: torch.nn.Module, ranks: Ranks) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP broadcasts them
    at the start of each training forward, but each rank then updates its copy with its own
    batch, so after the last step they differ a little; evaluation must use the saved ones."""
    if ranks.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def gather_evaluation(shard_eval: dict, ranks: Ranks) -> dict:
    """Per-image results of each rank's val_shard, back in val-set order, with loss and
    accuracy over the whole val set (so every rank sees the same numbers)."""
    if not ranks.enabled:
        return shard_eval
    shards: list[dict | None] = [None] * ranks.world_size
    dist.all_gather_object(shards, shard_eval)
    n = sum(len(shard["targets"]) for shard in shards)
    merged = {key: [] for key in ("targets", "preds", "probs", "probabilities")}
    for index in range(n):
        shard = shards[index % ranks.world_size]
        for key in merged:
            merged[key].append(shard[key][index // ranks.world_size])
    loss_sum = sum(shard["loss"] * len(shard["targets"]) for shard in shards)
    correct = sum(t == p for t, p in zip(merged["targets"], merged["preds"]))
    return {"loss": loss_sum / n, "acc": correct / n, **merged}

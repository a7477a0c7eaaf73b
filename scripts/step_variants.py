"""A/B of candidate speed-ups for hymtl's CPU train step, the ones hymtl tried and did not keep.

    python scripts/step_variants.py --data ../shared/data/hymenoptera_data \
        --variants base,pure_bf16,fused_sgd --rounds 8 --steps 15

Every variant trains ResNet-18 (batch 4, bf16 autocast, channels_last, random weights) on
hymtl's cached, augmented training images in its own process; the variants take turns, rounds of
`--steps` batches after a warm-up, and the table gives each one's median images/s and its
median per-round ratio to the first variant (the per-round ratio cancels most machine noise).
Each variant starts from hymtl's own setup (setup_runtime and build_parts of
hymtl.training.setup) and trains
with hymtl.training.loop.train_one_epoch, changing only what it tries.
scripts/bench.py compares hymtl's
kept settings with the tutorial loop; this script is the record of what was measured and dropped
(docs/performance.md).

Variants: base (hymtl's defaults without reuse_freed_memory), reuse_freed_memory, pure_bf16
(bf16 model, fp32 master weights), foreach_sgd, fused_sgd, compile, uint8_aug (augment to uint8,
normalize the batch), one_worker (a DataLoader worker), prefetch_thread (augment the next batch
in a thread), omp_bind (OMP_PROC_BIND=close), thp (THP_MEM_ALLOC_ENABLE=1).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import torch
from ab_harness import Side, SideFailed, Sides, median_rate, median_ratio
from hydra import compose, initialize_config_module
from torch import nn
from torchvision import transforms

from hymtl.config.schema import register_configs
from hymtl.run.resolvers import register_resolvers
from hymtl.training.loop import train_one_epoch
from hymtl.training.setup import build_parts, setup_runtime

VARIANTS = (
    "base reuse_freed_memory pure_bf16 foreach_sgd fused_sgd compile uint8_aug one_worker "
    "prefetch_thread omp_bind thp"
).split()
# What every variant trains with; base is this and nothing else.
RECIPE = (
    "model.pretrained=false device=cpu batch_size=4 precision=bf16 channels_last=true "
    "num_workers=0 reuse_freed_memory=false"
)
CONFIG_CHANGES = {
    "reuse_freed_memory": "reuse_freed_memory=true",
    "compile": "compile=true",
    "one_worker": "num_workers=1",
}
# Read once, when torch and its OpenMP runtime load: set from the side process's start.
ENVIRONMENT_CHANGES = {
    "omp_bind": {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
    "thp": {"THP_MEM_ALLOC_ENABLE": "1"},
}
WARMUP_STEPS = 3


def forever(loader):
    while True:
        yield from loader


def prefetched(batches, pool: ThreadPoolExecutor):
    """The same batches, each augmented in `pool`'s thread while the step before it runs."""
    pending = pool.submit(next, batches)
    while True:
        batch, pending = pending.result(), pool.submit(next, batches)
        yield batch


class CastInput(nn.Module):
    """The model, fed its input in `dtype` (pure_bf16: a bf16 model without autocast)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, images):
        return self.model(images.to(self.dtype))


class NormalizeInput(nn.Module):
    """The model, fed uint8 images that it normalizes as one batch (uint8_aug)."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.mean = torch.tensor(mean).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std).view(1, 3, 1, 1) * 255

    def forward(self, images):
        return self.model((images.float() - self.mean) / self.std)


class MasterWeights:
    """pure_bf16's optimizer: the bf16 copy's gradients step the fp32 master weights, which are
    then copied back into the bf16 copy."""

    def __init__(self, optimizer, master_model, low_model):
        self.optimizer = optimizer
        self.master = list(master_model.parameters())
        self.low = list(low_model.parameters())

    def zero_grad(self, set_to_none: bool = True):
        for param in self.low:
            param.grad = None

    def step(self):
        for param, low_param in zip(self.master, self.low, strict=True):
            param.grad = low_param.grad.float()
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_copy_(self.low, self.master)


def with_options(optimizer, **options):
    """The same optimizer over the same parameter groups, with `options` (foreach=, fused=).
    The scheduler keeps the old one; no variant steps it."""
    groups = [{**group, **options} for group in optimizer.param_groups]
    return type(optimizer)(groups, **options)


class VariantSide:
    """One variant, built from hymtl's parts: `run` trains `steps` batches with
    train_one_epoch."""

    def __init__(self, variant: str, data: str):
        overrides = [f"data.root={data}", *RECIPE.split(), *CONFIG_CHANGES.get(variant, "").split()]
        with initialize_config_module("hymtl.conf", version_base="1.3"):
            register_resolvers()  # what hymtl.train does before it composes
            register_configs()
            cfg = compose("config", overrides=overrides)
        self.runtime = setup_runtime(cfg)
        self.parts = parts = build_parts(cfg, self.runtime)
        self.autocast = self.runtime.autocast
        self.batches = forever(parts.train_loader)
        if variant == "pure_bf16":
            low_model = copy.deepcopy(parts.model).to(torch.bfloat16)  # equal to the master
            parts.step_model = CastInput(low_model, torch.bfloat16)
            parts.optimizer = MasterWeights(parts.optimizer, parts.model, low_model)
            self.autocast = contextlib.nullcontext  # the model is bf16 through and through
        elif variant == "foreach_sgd":
            parts.optimizer = with_options(parts.optimizer, foreach=True)
        elif variant == "fused_sgd":
            parts.optimizer = with_options(parts.optimizer, fused=True)
        elif variant == "uint8_aug":
            # The train loader holds this very dataset: its next batches come as uint8.
            parts.splits.train.transform = transforms.Compose(
                [
                    transforms.RandomResizedCrop(cfg.data.image_size),
                    transforms.RandomHorizontalFlip(),
                    transforms.PILToTensor(),
                ]
            )
            parts.step_model = NormalizeInput(parts.step_model, cfg.data.mean, cfg.data.std)
        elif variant == "prefetch_thread":
            self.batches = prefetched(self.batches, ThreadPoolExecutor(1))

    def run(self, task: str, steps: int) -> int:
        parts = self.parts
        stats = train_one_epoch(
            model=parts.step_model,
            loader=islice(self.batches, steps),
            criterion=parts.criterion,
            regularizer=parts.regularizer,
            optimizer=parts.optimizer,
            scaler=parts.scaler,
            device=self.runtime.device,
            autocast=self.autocast,
            channels_last=parts.channels_last,
            progress=False,
        )
        return stats["seen"]


def build_variant(spec: tuple[str, str]) -> VariantSide:
    """One variant, in its own process (ab_harness.Side.build)."""
    variant, data = spec
    return VariantSide(variant, data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/hymenoptera_data"))
    parser.add_argument("--variants", default="base,reuse_freed_memory")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15, help="batches per variant per round")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        print(f"step_variants: unknown {unknown}; choose from {VARIANTS}", file=sys.stderr)
        return 2
    if not (args.data / "train").is_dir():
        print(f"step_variants: {args.data}/train not found; pass --data DIR", file=sys.stderr)
        return 2
    sides = {
        name: Side(build_variant, (name, str(args.data)), ENVIRONMENT_CHANGES.get(name, {}))
        for name in variants
    }
    try:
        with Sides(sides) as running:
            running.take_turns([("train", WARMUP_STEPS)], rounds=1)
            timings = running.take_turns([("train", args.steps)], args.rounds)
    except SideFailed as error:
        print(f"step_variants: variant {error}", file=sys.stderr)
        return 1
    first = variants[0]
    print(f"{'variant':20} {'img/s':>6} {'per-round ratio to ' + first:>28}  img/s per round")
    for name in variants:
        rounds = timings[name]["train"]
        ratio = median_ratio(rounds, timings[first]["train"])
        per_round = " ".join(f"{timing.rate:.1f}" for timing in rounds)
        print(f"{name:20} {median_rate(rounds):6.1f} {ratio:28.3f}  {per_round}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

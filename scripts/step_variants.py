"""A/B of candidate speed-ups for hymtl's CPU train step, the ones hymtl tried and did not keep.

    python scripts/step_variants.py --data ../shared/data/hymenoptera_data \
        --variants base,pure_bf16,fused_sgd --rounds 8 --steps 15

Every variant trains ResNet-18 (batch 4, bf16 autocast, channels_last, random weights) on
hymtl's cached, augmented training images in its own process; the variants take turns, rounds of
`--steps` batches after a warm-up, and the table gives each one's median images/s and its
median per-round ratio to the first variant (the per-round ratio cancels most machine noise).
scripts/bench.py compares hymtl's kept settings with the tutorial loop; this script is the
record of what was measured and dropped (docs/performance.md).

Variants: base (hymtl's defaults without reuse_freed_memory), reuse_freed_memory, pure_bf16
(bf16 model, fp32 master weights), foreach_sgd, fused_sgd, compile, uint8_aug (augment to uint8,
normalize the batch), one_worker (a DataLoader worker), prefetch_thread (augment the next batch
in a thread), omp_bind (OMP_PROC_BIND=close), thp (THP_MEM_ALLOC_ENABLE=1).
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS = (
    "base", "reuse_freed_memory", "pure_bf16", "foreach_sgd", "fused_sgd", "compile",
    "uint8_aug", "one_worker", "prefetch_thread", "omp_bind", "thp",
)  # fmt: skip


def forever(loader):
    while True:
        yield from loader


def build_step(variant: str, torch, model):
    """The train step of one variant: (images, targets) -> loss."""
    import torch.nn.functional as F

    if variant == "pure_bf16":
        master = list(model.parameters())
        low_model = copy.deepcopy(model).to(torch.bfloat16)  # starts equal to the master
        low = list(low_model.parameters())
        optimizer = torch.optim.SGD(master, lr=1e-3, momentum=0.9)

        def step(images, targets):
            loss = F.cross_entropy(low_model(images.to(torch.bfloat16)).float(), targets)
            for param in low:
                param.grad = None
            loss.backward()
            for param, low_param in zip(master, low):
                param.grad = low_param.grad.float()
            optimizer.step()
            with torch.no_grad():
                torch._foreach_copy_(low, master)
            return loss.item()

        return step

    options = {"fused_sgd": {"fused": True}, "foreach_sgd": {"foreach": True}}.get(variant, {})
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, **options)
    step_model = torch.compile(model) if variant == "compile" else model

    def step(images, targets):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = step_model(images)
        loss = F.cross_entropy(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def side(connection, variant: str, data: str, start_method: str) -> None:
    # Spawned, this process would spawn its DataLoader worker too (torch re-imported each epoch).
    mp.set_start_method(start_method, force=True)
    # Environment switches must be set before torch (and its OpenMP runtime) loads.
    if variant == "omp_bind":
        os.environ.update(OMP_PROC_BIND="close", OMP_PLACES="cores")
    if variant == "thp":
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
    import torch
    import torchvision
    from torchvision import transforms

    from hymtl.data import load_data, make_loader
    from hymtl.runtime import reuse_freed_memory

    if variant == "reuse_freed_memory":
        reuse_freed_memory()
    torch.manual_seed(0)
    splits = load_data("hymenoptera", data)
    normalize = None
    if variant == "uint8_aug":
        splits.train.transform = transforms.Compose(
            [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
             transforms.PILToTensor()]
        )  # fmt: skip
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
        normalize = lambda images: (images.float() - mean) / std  # noqa: E731
    workers = 1 if variant == "one_worker" else 0
    batches = forever(make_loader(splits.train, 4, workers, True, 0, False))
    model = torchvision.models.resnet18(num_classes=2).to(memory_format=torch.channels_last)
    step = build_step(variant, torch, model)

    def train(images, targets):
        images = images.contiguous(memory_format=torch.channels_last)
        return step(normalize(images) if normalize else images, targets)

    pool = ThreadPoolExecutor(1) if variant == "prefetch_thread" else None
    pending = pool.submit(next, batches) if pool else None

    def next_batch():
        nonlocal pending
        if pool is None:
            return next(batches)
        batch, pending = pending.result(), pool.submit(next, batches)
        return batch

    for _ in range(3):
        train(*next_batch())
    connection.send("ready")
    while (steps := connection.recv()) > 0:
        start = time.perf_counter()
        for _ in range(steps):
            train(*next_batch())
        connection.send(4 * steps / (time.perf_counter() - start))
    if pool:
        pool.shutdown(cancel_futures=True)


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
    context = mp.get_context("spawn")
    connections, processes = {}, {}
    for name in variants:
        parent_end, child_end = context.Pipe()
        processes[name] = context.Process(
            target=side, args=(child_end, name, str(args.data), mp.get_start_method())
        )
        processes[name].start()
        connections[name] = parent_end

    def receive(name):
        while not connections[name].poll(1.0):
            if not processes[name].is_alive():
                for process in processes.values():
                    process.terminate()
                raise SystemExit(f"step_variants: variant {name} failed (its traceback is above)")
        return connections[name].recv()

    for name in variants:
        receive(name)
    rates = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name in variants if round_index % 2 == 0 else variants[::-1]:
            connections[name].send(args.steps)
            rates[name].append(receive(name))
    for connection in connections.values():
        connection.send(0)
    first = variants[0]
    print(f"{'variant':20} {'img/s':>6} {'per-round ratio to ' + first:>28}  img/s per round")
    for name in variants:
        ratio = statistics.median(a / b for a, b in zip(rates[name], rates[first]))
        rounds = " ".join(f"{rate:.1f}" for rate in rates[name])
        print(f"{name:20} {statistics.median(rates[name]):6.1f} {ratio:28.3f}  {rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

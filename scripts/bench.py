"""Train/eval throughput of hymtl's loop against the plain PyTorch tutorial loop, side by side.

    python scripts/bench.py                       # data/hymenoptera_data, CPU or CUDA (auto)
    python scripts/bench.py --data ../shared/data/hymenoptera_data --quick
    python scripts/bench.py --ablation            # also each speed option on its own
    python scripts/bench.py --device cuda
    python scripts/bench.py --frozen              # feature-extractor mode: cached vs recomputed

Both sides run the reference recipe (ResNet-18, batch 4, 224², SGD 0.001/0.9, the same images)
in their own process, so each reports its own peak memory, and they take turns: A/B rounds of the
same number of steps after a warm-up, so machine noise hits both alike (scripts/ab_harness.py).
The hymtl side is set up as train() sets itself up (setup_runtime and build_parts of
hymtl.training.setup) and runs hymtl.training.loop's train_one_epoch/evaluate on a fixed number
of batches. Reported: images/s
(train, eval, median over rounds), peak memory (max RSS of the side's main process on CPU, max
allocated on CUDA), this machine's measured fp32/bf16 matmul GFLOP/s and the fraction of it each
side achieves. The last line is `speedup_vs_reference=<train images/s of hymtl / reference>`.

Weights are random (speed does not depend on them; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

import torch
from ab_harness import Side, SideFailed, Sides, max_rss_mb, median_rate

# Each variant: hymtl overrides on top of the reference recipe, as typed on the command line. The
# last entry of the ablation chain is hymtl's fastest setting for this machine; it is what
# speedup_vs_reference measures.
FASTEST = "precision=auto channels_last=true num_workers=null reuse_freed_memory=true"  # defaults
PLAIN_MALLOC = "reuse_freed_memory=false"
ABLATION = {
    "hymtl fp32, PIL decode per epoch, 4 workers": (
        f"precision=fp32 channels_last=false data.cache_images=false num_workers=4 {PLAIN_MALLOC}"
    ),
    "+ decoded-image cache, 0 workers": (
        f"precision=fp32 channels_last=false num_workers=0 {PLAIN_MALLOC}"
    ),
    "+ channels_last": f"precision=fp32 channels_last=true num_workers=0 {PLAIN_MALLOC}",
    "+ bf16 autocast (precision=auto)": (
        f"precision=auto channels_last=true num_workers=null {PLAIN_MALLOC}"
    ),
    "+ reuse freed memory: defaults": FASTEST,
    "+ torch.compile": f"{FASTEST} compile=true",
}


def matmul_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 1.0):
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def best_matmul_gflops(device: torch.device, dtype: torch.dtype) -> float:
    """The best of square matmuls of two sizes: one size alone (2048², 1 s) under-reads the
    peak where larger tiles run faster (AMX, GPUs), and then a convolution-heavy step could
    show as more than 100% of it."""
    return max(matmul_gflops(device, dtype, size) for size in (2048, 4096))


def train_flops_per_image(image_size: int = 224) -> float:
    """FLOPs of one ResNet-18 forward+backward at batch 1, counted by torch (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models import resnet18

    model = resnet18(num_classes=2)
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, image_size, image_size)).sum().backward()
    return counter.get_total_flops()


def forever(loader):
    """Batches across epochs, as an epoch loop would see them (workers respawn per epoch if
    the loader is not persistent, exactly as in the loop being measured)."""
    while True:
        yield from loader


class ReferenceSide:
    """The PyTorch transfer-learning tutorial's loop, as users copy it: ImageFolder + PIL
    transforms, fp32, batch 4, set_grad_enabled, running loss/accuracy with .item()."""

    def __init__(self, data: Path, device: torch.device, num_workers: int):
        from torch import nn
        from torchvision import datasets, models, transforms

        normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        train_tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        )
        val_tf = transforms.Compose(
            [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize]
        )
        loader = torch.utils.data.DataLoader
        self.train_loader = loader(
            datasets.ImageFolder(data / "train", train_tf),
            batch_size=4,
            shuffle=True,
            num_workers=num_workers,
        )
        self.val_loader = loader(
            datasets.ImageFolder(data / "val", val_tf),
            batch_size=4,
            shuffle=False,
            num_workers=num_workers,
        )
        self.train_batches = forever(self.train_loader)
        self.val_batches = forever(self.val_loader)
        self.device = device
        self.model = models.resnet18(weights=None)
        self.model.fc = nn.Linear(self.model.fc.in_features, 2)
        self.model = self.model.to(device)
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.001, momentum=0.9)

    def train_steps(self, steps: int) -> int:
        self.model.train()
        running_loss, running_corrects, seen = 0.0, 0, 0
        for inputs, labels in islice(self.train_batches, steps):
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            with torch.set_grad_enabled(True):
                outputs = self.model(inputs)
                _, preds = torch.max(outputs, 1)
                loss = self.criterion(outputs, labels)
                loss.backward()
                self.optimizer.step()
            running_loss += loss.item() * inputs.size(0)
            running_corrects += torch.sum(preds == labels.data).item()
            seen += inputs.size(0)
        return seen

    def eval_steps(self, steps: int) -> int:
        self.model.eval()
        seen = 0
        for inputs, labels in islice(self.val_batches, steps):
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            with torch.set_grad_enabled(False):
                outputs = self.model(inputs)
                _, preds = torch.max(outputs, 1)
                self.criterion(outputs, labels).item()
            seen += inputs.size(0)
        return seen


class HymtlSide:
    """hymtl as train() sets it up (setup_runtime, build_parts) and its train_one_epoch/evaluate,
    fed a fixed number of batches per round: a change to hymtl's loop or setup is measured
    here as it is, without editing the bench."""

    def __init__(self, data: Path, device: torch.device, overrides: list[str]):
        # Imported here, not at the top: the reference side's process (and its max RSS) must
        # not carry hymtl's imports.
        from hydra import compose, initialize_config_module

        from hymtl.config.schema import register_configs
        from hymtl.run.resolvers import register_resolvers
        from hymtl.training.loop import evaluate, train_one_epoch
        from hymtl.training.setup import build_parts, setup_runtime

        register_resolvers()  # what hymtl.train does before it composes
        register_configs()

        with initialize_config_module("hymtl.conf", version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    f"data.root={data}",
                    "model.pretrained=false",
                    f"device={device}",
                    *overrides,
                ],
            )
        self.train_one_epoch, self.evaluate = train_one_epoch, evaluate
        self.runtime = setup_runtime(cfg)
        self.parts = build_parts(cfg, self.runtime)
        self.precision = self.runtime.precision
        self.probed = False
        self.train_batches = forever(self.parts.train_loader)
        self.val_batches = forever(self.parts.val_loader)

    def train_steps(self, steps: int) -> int:
        parts, runtime = self.parts, self.runtime
        if runtime.auto_threads is not None and not self.probed:
            # threads=auto chose while every side was being set up at once; here, in the
            # warm-up, only this side runs (and whatever competes with the bench)
            runtime.auto_threads.probe()
            self.probed = True
        stats = self.train_one_epoch(
            model=parts.step_model,
            loader=islice(self.train_batches, steps),
            criterion=parts.criterion,
            regularizer=parts.regularizer,
            optimizer=parts.optimizer,
            scaler=parts.scaler,
            device=runtime.device,
            autocast=runtime.autocast,
            channels_last=parts.channels_last,
            progress=False,
        )
        return stats["seen"]

    def eval_steps(self, steps: int) -> int:
        parts, runtime = self.parts, self.runtime
        evaluation = self.evaluate(
            model=parts.eval_model,
            loader=islice(self.val_batches, steps),
            criterion=parts.criterion,
            device=runtime.device,
            autocast=runtime.autocast,
            channels_last=parts.channels_last,
            progress=False,
        )
        return len(evaluation["targets"])


def frozen_comparison(data: Path, device: torch.device, epochs: int) -> float:
    """Per-epoch time of the tutorial's fixed-feature-extractor loop (backbone frozen but run on
    every augmented image, every epoch) against hymtl's model.freeze_backbone=true (features of
    un-augmented images computed once, head trained on the cache). Returns the ratio."""
    import tempfile

    from hydra import compose, initialize_config_module

    from hymtl.train import train

    reference = ReferenceSide(data, device, num_workers=0)
    for name, param in reference.model.named_parameters():
        param.requires_grad = name.startswith("fc.")
    reference.optimizer = torch.optim.SGD(reference.model.fc.parameters(), lr=0.001, momentum=0.9)
    n_train, n_val = len(reference.train_loader), len(reference.val_loader)
    reference_epochs = []
    for _ in range(epochs):
        start = time.perf_counter()
        reference.train_steps(n_train)
        reference.eval_steps(n_val)
        reference_epochs.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as run_dir:
        with initialize_config_module("hymtl.conf", version_base="1.3"):
            overrides = f"model.pretrained=false model.freeze_backbone=true epochs={epochs}"
            cfg = compose(
                "config", overrides=[f"data.root={data}", f"device={device}", *overrides.split()]
            )
        summary = train(cfg, run_dir)
    hymtl_epoch = summary["seconds_per_epoch"]
    reference_epoch = statistics.median(reference_epochs)
    once = summary["seconds_total"] - hymtl_epoch * epochs
    print(f"frozen backbone, {epochs} epochs of ResNet-18 on {data}:")
    print(f"  tutorial fixed-feature-extractor loop: {reference_epoch:8.2f} s/epoch")
    print(
        f"  hymtl model.freeze_backbone=true:      {hymtl_epoch:8.2f} s/epoch "
        f"(+ {once:.1f} s once: data scan, feature extraction, artifacts)"
    )
    print(f"  per-epoch speedup: {reference_epoch / hymtl_epoch:.0f}×")
    return reference_epoch / hymtl_epoch


class TimedSide:
    """A bench side as the A/B harness times it: task "train" or "eval", CUDA work waited for,
    peak memory as max allocated on CUDA (the harness's default, max RSS, on CPU)."""

    def __init__(self, side, device: torch.device):
        self.side, self.device = side, device
        self.info = getattr(side, "precision", "fp32")  # the tutorial loop runs fp32

    def run(self, task: str, steps: int) -> int:
        return self.side.train_steps(steps) if task == "train" else self.side.eval_steps(steps)

    def wait(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        return max_rss_mb()


def build_side(spec: dict) -> TimedSide:
    """One side, in its own process (ab_harness.Side.build)."""
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    if spec["kind"] == "reference":
        side = ReferenceSide(Path(spec["data"]), device, spec["num_workers"])
    else:
        side = HymtlSide(Path(spec["data"]), device, spec["overrides"].split())
    return TimedSide(side, device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/hymenoptera_data"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="2 short rounds: under a minute")
    parser.add_argument("--ablation", action="store_true", help="also time each option alone")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=20, help="batches per side per round")
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="OVERRIDES",
        help='one more hymtl side with these overrides, e.g. --also "precision=fp32"',
    )
    parser.add_argument(
        "--frozen", action="store_true", help="time feature-extractor mode (cached vs recomputed)"
    )
    parser.add_argument(
        "--busy",
        type=lambda text: [int(part) for part in text.split(",")],
        default=None,
        metavar="N[,N]",
        help="with N competing CPU-bound processes: auto threads against each fixed count",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=4,
        help="DataLoader workers of the reference loop (the tutorial uses 4)",
    )
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        print(
            f"bench: {args.data}/train not found; pass --data /path/to/hymenoptera_data",
            file=sys.stderr,
        )
        return 2
    if args.quick:
        args.rounds, args.train_steps, args.eval_steps, args.warmup = 2, 4, 4, 1
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )

    if args.frozen:
        ratio = frozen_comparison(args.data, device, epochs=2 if args.quick else 3)
        print(f"frozen_speedup_per_epoch={ratio:.1f}")
        return 0

    fp32 = best_matmul_gflops(device, torch.float32)
    bf16 = best_matmul_gflops(device, torch.bfloat16)
    flops = train_flops_per_image()
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"matmul, best of 2048² and 4096²: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s; "
        f"ResNet-18 train step {flops / 1e9:.1f} GFLOP/image (fwd+bwd, counted)"
    )

    chosen = ABLATION if args.ablation else {"hymtl (fastest)": FASTEST}
    chosen.update({f"hymtl {overrides}": f"{FASTEST} {overrides}" for overrides in args.also})
    common = {"data": str(args.data), "device": str(device)}
    if args.busy:
        return busy_comparison(args, common)
    references = {REFERENCE: args.num_workers}
    if args.num_workers != 0:  # the same loop without workers: on few cores the faster one
        references[f"{REFERENCE}, 0 workers"] = 0
    sides = reference_sides(common, references)
    for name, overrides in chosen.items():
        sides[name] = Side(build_side, {**common, "kind": "hymtl", "overrides": overrides})
    result = compare(sides, args)
    if result is None:
        return 1
    timings, precisions, warmups = result
    print_table(timings, precisions, warmups, args, device, (fp32, bf16), flops)
    fastest_name = next(name for name, overrides in chosen.items() if overrides == FASTEST)
    hymtl_rate = median_rate(timings[fastest_name]["train"])
    rates = {name: median_rate(timings[name]["train"]) for name in references}
    best_reference = max(rates, key=rates.get)
    print(
        f"(of matmul: train GFLOP/s achieved / the best square-matmul GFLOP/s measured here "
        f"at the side's precision, 2048² or 4096², a floor of the peak: oneDNN's convolutions "
        f"can beat it, so over 100% is possible; warm-up s: the untimed first batches, "
        f"torch.compile included; hymtl fastest = {FASTEST})"
    )
    print(f"fastest reference here: {best_reference} ({rates[best_reference]:.1f} train img/s)")
    print(f"speedup_vs_best_reference={hymtl_rate / rates[best_reference]:.3f}")
    print(f"speedup_vs_reference={hymtl_rate / rates[REFERENCE]:.3f}")
    return 0


REFERENCE = "reference (tutorial loop)"


def reference_sides(common: dict, references: dict[str, int]) -> dict[str, Side]:
    return {
        name: Side(build_side, {**common, "kind": "reference", "num_workers": workers})
        for name, workers in references.items()
    }


def compare(sides: dict[str, Side], args):
    """Warm-up, then args.rounds A/B rounds: (timings, precisions, warm-ups), None on failure."""
    warmup = [("train", args.warmup), ("eval", args.warmup)]
    try:
        with Sides(sides) as running:
            warmups = running.take_turns(warmup, rounds=1)
            tasks = [("train", args.train_steps), ("eval", args.eval_steps)]
            timings = running.take_turns(tasks, args.rounds)
            return timings, running.info, warmups
    except SideFailed as error:
        print(f"bench: side {error}", file=sys.stderr)
        return None


def print_table(timings, precisions, warmups, args, device, peaks, flops) -> None:
    fp32, bf16 = peaks
    reference = median_rate(timings[REFERENCE]["train"])
    memory = "max allocated" if device.type == "cuda" else "max RSS"
    print(
        f"\n{args.rounds} rounds × {args.train_steps} train / {args.eval_steps} eval batches "
        f"of 4 per side, after {args.warmup} warm-up batches; medians"
    )
    print(
        f"{'side':42} {'train img/s':>11} {'eval img/s':>10} {'speedup':>8} "
        f"{'of matmul':>9} {memory + ' MiB':>15} {'warm-up s':>9}"
    )
    for name, timing in timings.items():
        train_rate = median_rate(timing["train"])
        matmul_peak = bf16 if precisions[name] in ("bf16", "fp16") else fp32
        peak_mb = max(round_.peak_mb for task in timing.values() for round_ in task)
        warmup_s = sum(round_.seconds for task in warmups[name].values() for round_ in task)
        print(
            f"{name:42} {train_rate:11.1f} {median_rate(timing['eval']):10.1f} "
            f"{train_rate / reference:7.2f}× {train_rate * flops / 1e9 / matmul_peak:8.1%} "
            f"{peak_mb:15.0f} {warmup_s:9.1f}"
        )
    print("train img/s per round:")
    for name, timing in timings.items():
        print(f"  {name:43} {' '.join(f'{round_.rate:5.1f}' for round_ in timing['train'])}")


def spin() -> None:
    """A competing CPU-bound process (--busy): one core, busy until killed."""
    while True:
        pass


def busy_comparison(args, common: dict) -> int:
    """For each count N of --busy: N competing CPU-bound processes run throughout while the
    tutorial loop, hymtl's defaults (threads=auto) and hymtl at each fixed thread count take
    turns. Last line: busy_auto_vs_best=<the lowest, over N, of auto's train img/s over the
    best fixed count's>."""
    import multiprocessing as mp

    cores = len(__import__("os").sched_getaffinity(0))
    sides = reference_sides(common, {REFERENCE: 0})
    sides["hymtl threads=auto (default)"] = Side(
        build_side, {**common, "kind": "hymtl", "overrides": FASTEST}
    )
    for threads in range(1, cores + 1):
        sides[f"hymtl threads={threads}"] = Side(
            build_side, {**common, "kind": "hymtl", "overrides": f"{FASTEST} threads={threads}"}
        )
    ratios = {}
    for busy in args.busy:
        spinners = [mp.get_context("spawn").Process(target=spin, daemon=True) for _ in range(busy)]
        for spinner in spinners:
            spinner.start()
        try:
            result = compare(sides, args)
        finally:
            for spinner in spinners:
                spinner.terminate()
                spinner.join()
        if result is None:
            return 1
        timings = result[0]
        rates = {name: median_rate(timing["train"]) for name, timing in timings.items()}
        fixed = {
            name: rate
            for name, rate in rates.items()
            if name.startswith("hymtl threads=") and "auto" not in name
        }
        best = max(fixed, key=fixed.get)
        auto = rates["hymtl threads=auto (default)"]
        ratios[busy] = auto / fixed[best]
        print(
            f"\n{busy} competing busy process(es), {cores} cores; "
            f"train img/s, median of {args.rounds} rounds:"
        )
        for name, rate in rates.items():
            print(
                f"  {name:34} {rate:7.1f}  "
                f"({rate / rates[REFERENCE]:.2f}× the tutorial loop, 0 workers)"
            )
        print(f"  auto / best fixed ({best}): {ratios[busy]:.3f}")
    print(f"busy_auto_vs_best={min(ratios.values()):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

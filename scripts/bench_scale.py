"""How hymtl's start-up and training throughput hold up as the image folder grows.

    python scripts/bench_scale.py                          # 400, 4,000 and 20,000 images
    python scripts/bench_scale.py --sizes 40,80 --steps 3  # a smoke run
    python scripts/bench_scale.py --data-dir /tmp/hymtl_scale --cache-max-mb 2048

Generates (once, in --data-dir) 2-class ImageFolders of hymenoptera-like JPEGs (about 500×375,
60% train / 40% val), the sizes sharing their files through hard links. Each case runs in its own
process (so peak memory is its own), set up exactly as training is (scripts/bench.py's HymtlSide:
hymtl.training.setup's setup_runtime and build_parts, ResNet-18 with random weights, batch 4,
the default speed settings). Each larger case takes turns with the smallest one
(scripts/ab_harness.py: A/B rounds of the same number of batches after a warm-up), so that
machine noise hits both alike and cancels out of their ratio. Reported per case:

    start-up    seconds of the whole set-up (build_parts: data, model, loaders)
    scan        milliseconds per image of the data stage in it (listing, decoding and caching
                every file: hymtl.data.load_data), and the cores it kept busy (CPU s / wall s)
    train, eval images/s over the same number of batches for every size (median over rounds)
    ÷ smallest  median over rounds of train images/s ÷ the smallest case's in the same round
    peak RSS    max resident memory of the case's process
    cached      images the decoded-image cache holds, of all images

The cases use the default cache limit (`data.cache_max_mb`, auto unless --cache-max-mb says),
and the largest size runs once more with a limit that holds only a quarter of its images.
The last two lines are the ÷ smallest of the quarter-cache case, `scale_ratio_quarter_cache=`,
then of the largest size at the default limit, `scale_ratio=`.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from ab_harness import Side, SideFailed, Sides, median_rate, median_ratio
from PIL import Image

CLASSES = ("ants", "bees")
TRAIN_SHARE = 0.6  # hymenoptera: 244 train, 153 val
SHAPES = [(500, 375), (500, 333), (375, 500), (500, 400)]  # hymenoptera's most common sizes
COMPLETE = ".complete"  # written last: a folder without it is regenerated


def photo_like(number: int) -> Image.Image:
    """A deterministic JPEG-sized stand-in for a photo: smooth colour fields with grain, about
    as costly to decode as the real images (their JPEGs are 40-150 kB)."""
    rng = np.random.default_rng(number)
    width, height = SHAPES[number % len(SHAPES)]
    tint = np.zeros(3)
    tint[number % len(CLASSES)] = 60  # each class leans to its own channel
    coarse = rng.integers(0, 196, (9, 12, 3)) + tint
    smooth = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    grain = rng.integers(-20, 21, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(smooth, np.int16) + grain, 0, 255).astype(np.uint8))


def write_images(folder: Path, numbers: range) -> None:
    for number in numbers:
        path = folder / CLASSES[number % len(CLASSES)] / f"{number:06d}.jpg"
        photo_like(number).save(path, quality=90)


def image_pool(data_dir: Path, count: int) -> Path:
    """data_dir/pool/CLASS/NNNNNN.jpg for numbers 0..count-1, written in parallel; a pool from an
    earlier run is reused, and only extended when this run needs more images."""
    pool, start = data_dir / "pool", time.perf_counter()
    marker = pool / COMPLETE
    written = int(marker.read_text()) if marker.exists() else 0
    if written >= count:
        return pool
    for name in CLASSES:
        (pool / name).mkdir(parents=True, exist_ok=True)
    chunks = [range(first, min(first + 500, count)) for first in range(written, count, 500)]
    with ProcessPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as workers:
        list(workers.map(write_images, [pool] * len(chunks), chunks))
    marker.write_text(str(count))
    print(f"generated {count - written} JPEGs in {pool} ({time.perf_counter() - start:.0f} s)")
    return pool


def image_folder(data_dir: Path, pool: Path, size: int) -> Path:
    """data_dir/images_SIZE/{train,val}/CLASS/: the pool's first `size` images, hard-linked."""
    root = data_dir / f"images_{size}"
    if (root / COMPLETE).exists():
        return root
    train_count = round(size * TRAIN_SHARE)
    for number in range(size):
        name = CLASSES[number % len(CLASSES)]
        split = "train" if number < train_count else "val"
        target = root / split / name / f"{number:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(pool / name / f"{number:06d}.jpg", target)
    (root / COMPLETE).touch()
    return root


def decoded_mb(size: int) -> float:
    """MiB the cache needs for the first `size` images (PIL keeps RGB at 4 bytes a pixel)."""
    return sum(np.prod(SHAPES[number % len(SHAPES)]) * 4 for number in range(size)) / 2**20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ScaleCase:
    """One case, in its own process (ab_harness.Side.build): set up as training is, then
    asked for train or eval batches. `info`: the cache and start-up figures, sent when ready."""

    def __init__(self, spec: dict) -> None:
        import torch
        from bench import FASTEST, HymtlSide

        import hymtl.data

        # build_parts finds load_data by its import path when it instantiates data=, so timing
        # it here times the scan (decode and cache) inside the real set-up.
        load_data, scan = hymtl.data.load_data, {}

        def timed_load_data(*args, **kwargs):
            wall, cpu = time.perf_counter(), cpu_seconds()
            splits = load_data(*args, **kwargs)
            scan["s"], scan["cpu_s"] = time.perf_counter() - wall, cpu_seconds() - cpu
            return splits

        hymtl.data.load_data = timed_load_data
        torch.manual_seed(0)
        overrides = [*FASTEST.split(), f"data.cache_max_mb={spec['cache_max_mb']}"]
        # The two sides of a pair start together; the lock makes them set up one after the
        # other, so neither's start-up is timed while the other's competes for the cores.
        with open(Path(spec["root"]).parent / "setup.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            wall = time.perf_counter()
            self.side = HymtlSide(Path(spec["root"]), torch.device("cpu"), overrides)
            startup_s = time.perf_counter() - wall
        splits = self.side.parts.splits
        self.info = {
            "images": len(splits.train) + len(splits.val),
            "cached": len(splits.train.cache.images),
            "cache_limit_mb": splits.train.cache.max_bytes / 2**20,
            "startup_s": startup_s,
            "scan_s": scan["s"],
            "scan_cores": scan["cpu_s"] / scan["s"],
        }

    def run(self, task: str, steps: int) -> int:
        return self.side.train_steps(steps) if task == "train" else self.side.eval_steps(steps)


def time_pair(cases: dict[str, dict], args) -> tuple[dict, dict]:
    """A/B rounds of two cases (ab_harness): each one's start-up info and timings."""
    sides = {name: Side(ScaleCase, spec) for name, spec in cases.items()}
    with Sides(sides) as running:
        running.take_turns([("train", args.warmup), ("eval", args.warmup)], rounds=1)
        timings = running.take_turns([("train", args.steps), ("eval", args.steps)], args.rounds)
        return running.info, timings


def print_table(info: dict, timings: dict, ratios: dict) -> None:
    print(
        f"{'case':24} {'cached':>13} {'limit MiB':>9} {'start-up s':>10} {'scan ms/img':>11} "
        f"{'cores':>5} {'train img/s':>11} {'eval img/s':>10} {'÷ smallest':>10} "
        f"{'peak RSS MiB':>12}"
    )
    for name, case in info.items():
        peak_mb = max(round_.peak_mb for task in timings[name].values() for round_ in task)
        print(
            f"{name:24} {case['cached']:>6}/{case['images']:<6} {case['cache_limit_mb']:9.0f} "
            f"{case['startup_s']:10.1f} {1000 * case['scan_s'] / case['images']:11.2f} "
            f"{case['scan_cores']:5.2f} {median_rate(timings[name]['train']):11.1f} "
            f"{median_rate(timings[name]['eval']):10.1f} {ratios[name]:9.3f}× {peak_mb:12.0f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/hymtl_scale"))
    parser.add_argument("--sizes", default="400,4000,20000", help="images per folder, ascending")
    parser.add_argument("--steps", type=int, default=20, help="train/eval batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5, help="batches before timing")
    parser.add_argument("--cache-max-mb", default="auto", help="the limit of the default cases")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    pool = image_pool(args.data_dir, sizes[-1])

    def case(size: int, cache_max_mb) -> dict:
        root = image_folder(args.data_dir, pool, size)
        return {"root": str(root), "cache_max_mb": cache_max_mb}

    smallest = f"{sizes[0]} images"
    cases = {f"{size} images": case(size, args.cache_max_mb) for size in sizes[1:]}
    quarter_mb = decoded_mb(sizes[-1]) / 4
    quarter = f"{sizes[-1]} images, 1/4 cache"
    cases[quarter] = case(sizes[-1], quarter_mb)
    print(
        f"{os.cpu_count()} CPUs; ResNet-18, batch 4, hymtl's defaults; each case in A/B rounds "
        f"with the {sizes[0]}-image case: {args.rounds} rounds of {args.steps} train and "
        f"{args.steps} eval batches after {args.warmup}; cache limit {args.cache_max_mb}, and "
        f"{quarter_mb:.0f} MiB for 1/4 of {sizes[-1]} images",
        flush=True,
    )
    info, timings, ratios, paired_rounds = {}, {}, {smallest: 1.0}, {}
    try:
        for name, spec in cases.items():
            pair = {smallest: case(sizes[0], args.cache_max_mb), name: spec}
            pair_info, pair_timings = time_pair(pair, args)
            info.setdefault(smallest, pair_info[smallest])
            timings.setdefault(smallest, pair_timings[smallest])
            info[name], timings[name] = pair_info[name], pair_timings[name]
            ratios[name] = median_ratio(
                pair_timings[name]["train"], pair_timings[smallest]["train"]
            )
            paired_rounds[name] = (pair_timings[name]["train"], pair_timings[smallest]["train"])
    except SideFailed as error:
        print(f"bench_scale: case {error}", file=sys.stderr)
        return 1
    print_table(info, timings, ratios)
    print("(÷ smallest: median over rounds of train img/s ÷ the smallest case's in the same round)")
    print(f"train img/s per round, each case / the {smallest} case beside it:")
    for name, (rounds, beside) in paired_rounds.items():
        pairs = " ".join(f"{a.rate:5.1f}/{b.rate:<5.1f}" for a, b in zip(rounds, beside))
        print(f"  {name:24} {pairs}")
    print(f"scale_ratio_quarter_cache={ratios[quarter]:.3f}")
    print(f"scale_ratio={ratios[f'{sizes[-1]} images']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

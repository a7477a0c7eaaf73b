"""Kill training at random moments, resume it, and check it ends exactly like an unbroken run.

    python scripts/chaos.py                 # 5 kills on a tiny generated image folder (~2 min)
    python scripts/chaos.py --runs 20 --epochs 6 --seed 1

Each trial starts the same short CPU run (deterministic=true) as a subprocess, SIGKILLs it at a
random moment (start-up, mid-epoch, mid-checkpoint: wherever it lands), then runs
`python -m hymtl.train resume=RUN_DIR` and compares metrics.csv (all columns but seconds), the
summary's metrics and weight statistics, and the final weights with an uninterrupted run.
A run killed before its first checkpoint existed is simply started again, as a user would.
The last line is `resumed identical: K/N`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hymtl.toydata import make_toy_image_folder

SUMMARY_KEYS = ("best_epoch", "best_val_acc", "best_model", "final_model", "final_weights")


def train_command(data: Path, run_dir: Path, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "hymtl.train", "data=imagefolder", f"data.root={data}",
        f"epochs={epochs}", "deterministic=true", "precision=fp32", "model.pretrained=false",
        "data.image_size=32", "data.resize_size=36", "num_workers=0", "optimizer.lr=0.01",
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")


def fingerprint(run_dir: Path) -> tuple:
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]
    summary = json.loads((run_dir / "summary.json").read_text())
    weights = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    return rows, {key: summary[key] for key in SUMMARY_KEYS}, weights


def identical(a: tuple, b: tuple) -> bool:
    rows_a, summary_a, weights_a = a
    rows_b, summary_b, weights_b = b
    same_weights = weights_a.keys() == weights_b.keys() and all(
        torch.equal(weights_a[key], weights_b[key]) for key in weights_a
    )
    return rows_a == rows_b and summary_a == summary_b and same_weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    args = parser.parse_args()
    chooser = random.Random(args.seed)
    os.environ["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryDirectory(prefix="hymtl-chaos-") as tmp:
        tmp = Path(tmp)
        data = make_toy_image_folder(tmp / "images")
        started = time.time()
        run(train_command(data, tmp / "reference", args.epochs))
        duration = time.time() - started
        reference = fingerprint(tmp / "reference")
        print(f"reference run: {args.epochs} epochs in {duration:.1f}s")
        same = 0
        for trial in range(args.runs):
            run_dir = tmp / f"trial{trial}"
            delay = chooser.uniform(0.2, duration)
            process = subprocess.Popen(
                train_command(data, run_dir, args.epochs),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(delay)
            finished_first = process.poll() is not None
            process.send_signal(signal.SIGKILL)
            process.wait()
            last = run_dir / "last.pt"
            epoch_at_kill = torch.load(last, weights_only=True)["epoch"] if last.exists() else None
            if epoch_at_kill is None:  # killed before the first checkpoint: start again
                run(train_command(data, run_dir, args.epochs))
            else:
                run([sys.executable, "-m", "hymtl.train", f"resume={run_dir}"])
            ok = identical(fingerprint(run_dir), reference)
            same += ok
            where = (
                "after it finished" if finished_first
                else "before its first checkpoint" if epoch_at_kill is None
                else f"with last.pt at epoch {epoch_at_kill}"
            )  # fmt: skip
            print(f"trial {trial}: killed at {delay:.1f}s {where}: "
                  f"{'identical' if ok else 'DIFFERENT'}")  # fmt: skip
    print(f"resumed identical: {same}/{args.runs}")
    return 0 if same == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())

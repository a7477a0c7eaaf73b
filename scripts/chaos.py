"""Kill training at random moments, resume it, and check it ends exactly like an unbroken run.

    python scripts/chaos.py                 # 5 kills of an l2sp holdout run, tiny images (~2 min)
    python scripts/chaos.py --runs 20 --epochs 6 --seed 1
    python scripts/chaos.py --sweep --runs 3   # kill a 4-job sweep, re-run the same command

Each trial starts the same short CPU run (deterministic=true) as a subprocess, SIGKILLs it at a
random moment (start-up, mid-epoch, mid-checkpoint: wherever it lands), then runs
`python -m hymtl.train resume=RUN_DIR` and compares metrics.csv (all columns but seconds), the
summary's metrics and weight statistics, and the final weights with an uninterrupted run.
A run killed before its first checkpoint existed is simply started again, as a user would.
The last line is `resumed identical: K/N`.
"""

from __future__ import annotations

import argparse
import contextlib
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

from hymtl.data.toydata import make_toy_image_folder

SUMMARY_KEYS = ("best_epoch", "best_val_acc", "best_model", "final_model", "final_weights")
SUMMARY_KEYS += ("test", "calibration")


SETTINGS = [
    "data=imagefolder",
    "deterministic=true",
    "precision=fp32",
    "model.pretrained=false",
    "data.image_size=32",
    "data.resize_size=36",
    "num_workers=0",
    "optimizer.lr=0.01",
]
SWEEP = ["-m", "regularizer=none,l1,l2,elasticnet", "lambda_l1=1e-4", "lambda_l2=1e-3"]


# The single run also carries what resume must restore beyond the loop's own state: l2sp's
# starting weights w0 (kept in last.pt) and a held-out test set evaluated once at the end.
SINGLE = ["regularizer=l2sp", "evaluation=holdout"]


def train_command(data: Path, run_dir: Path, epochs: int) -> list[str]:
    hymtl_train = [sys.executable, "-m", "hymtl.train", *SETTINGS, *SINGLE]
    return [*hymtl_train, f"data.root={data}", f"epochs={epochs}", f"hydra.run.dir={run_dir}"]


def sweep_command(data: Path, sweep_dir: Path, epochs: int) -> list[str]:
    hymtl_train = [sys.executable, "-m", "hymtl.train", *SWEEP, *SETTINGS]
    return [*hymtl_train, f"data.root={data}", f"epochs={epochs}", f"hydra.sweep.dir={sweep_dir}"]


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")


def fingerprint(run_dir: Path) -> tuple:
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(handle)]
    summary = json.loads((run_dir / "summary.json").read_text())
    weights = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    return rows, {key: summary.get(key) for key in SUMMARY_KEYS}, weights


def identical(a: tuple, b: tuple) -> bool:
    rows_a, summary_a, weights_a = a
    rows_b, summary_b, weights_b = b
    same_weights = weights_a.keys() == weights_b.keys() and all(
        torch.equal(weights_a[key], weights_b[key]) for key in weights_a
    )
    return rows_a == rows_b and summary_a == summary_b and same_weights


def kill_at_random(command: list[str], chooser: random.Random, duration: float) -> tuple:
    """Start `command`, SIGKILL it at a random moment; (delay, whether it had finished)."""
    delay = chooser.uniform(0.2, duration)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    finished_first = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return delay, finished_first


def sweep_report(sweep_dir: Path, out: Path) -> tuple:
    """Every job's fingerprint, and hymtl.report's per-regularizer table (report.csv)."""
    from hymtl.report import main as report_main

    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        if report_main([str(sweep_dir), "--out", str(out)]) != 0:
            raise RuntimeError(f"hymtl.report {sweep_dir} failed")
    jobs = sorted(path.name for path in sweep_dir.iterdir() if (path / "last.pt").exists())
    return [fingerprint(sweep_dir / job) for job in jobs], (out / "report.csv").read_text()


def completed_jobs(sweep_dir: Path) -> list[str]:
    summaries = sweep_dir.glob("*/summary.json")
    return sorted(path.parent.name for path in summaries if '"completed"' in path.read_text())


def same_sweep(a: tuple, b: tuple) -> bool:
    jobs_a, table_a = a
    jobs_b, table_b = b
    same_jobs = len(jobs_a) == len(jobs_b) and all(map(identical, jobs_a, jobs_b))
    return same_jobs and table_a == table_b


def sweep_chaos(args, chooser: random.Random, tmp: Path) -> int:
    """Kill a 4-job sweep at random moments and re-run the same command into the same
    directory: the study must end as the unbroken sweep did, job for job and in the report."""
    data = make_toy_image_folder(tmp / "images")
    started = time.time()
    run(sweep_command(data, tmp / "reference", args.epochs))
    duration = time.time() - started
    reference = sweep_report(tmp / "reference", tmp / "reference-report")
    print(f"reference sweep: 4 jobs x {args.epochs} epochs in {duration:.1f}s")
    same = 0
    for trial in range(args.runs):
        sweep_dir = tmp / f"trial{trial}"
        command = sweep_command(data, sweep_dir, args.epochs)
        delay, finished_first = kill_at_random(command, chooser, duration)
        done = completed_jobs(sweep_dir)
        run(command)  # the same command again continues the study
        ok = same_sweep(sweep_report(sweep_dir, tmp / f"trial{trial}-report"), reference)
        same += ok
        when = "after it finished" if finished_first else f"with jobs {done or 'none'} done"
        print(f"trial {trial}: killed at {delay:.1f}s {when}: {'identical' if ok else 'DIFFERENT'}")
    print(f"resumed identical: {same}/{args.runs}")
    return 0 if same == args.runs else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--sweep", action="store_true", help="kill a 4-job sweep instead")
    args = parser.parse_args()
    chooser = random.Random(args.seed)
    os.environ["PYTHONUNBUFFERED"] = "1"
    if args.sweep:
        with tempfile.TemporaryDirectory(prefix="hymtl-chaos-sweep-") as tmp:
            return sweep_chaos(args, chooser, Path(tmp))
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
            delay, finished_first = kill_at_random(
                train_command(data, run_dir, args.epochs), chooser, duration
            )
            last = run_dir / "last.pt"
            epoch_at_kill = torch.load(last, weights_only=True)["epoch"] if last.exists() else None
            if epoch_at_kill is None:  # killed before the first checkpoint: start afresh
                run([*train_command(data, run_dir, args.epochs), "overwrite=true"])
            else:
                run([sys.executable, "-m", "hymtl.train", f"resume={run_dir}"])
            ok = identical(fingerprint(run_dir), reference)
            same += ok
            where = f"with last.pt at epoch {epoch_at_kill}"
            if epoch_at_kill is None:
                where = "before its first checkpoint"
            if finished_first:
                where = "after it finished"
            verdict = "identical" if ok else "DIFFERENT"
            print(f"trial {trial}: killed at {delay:.1f}s {where}: {verdict}")
    print(f"resumed identical: {same}/{args.runs}")
    return 0 if same == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())

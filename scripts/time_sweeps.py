"""Wall time of a sweep: Hydra's basic launcher (one job after another, each with all cores)
against the joblib launcher (n_jobs side by side, cores // n_jobs threads each).

    python scripts/time_sweeps.py --data ../shared/data/hymenoptera_data \
        --weights ../shared/weights/mobilenet_v2_imagenet_features.pth --epochs 3
    python scripts/time_sweeps.py --study --n-jobs 2 ...     # experiment=regularization_study
    python scripts/time_sweeps.py --device cuda --n-jobs 2,4 ...  # jobs sharing one GPU

The sweep is the four regularizers (seed 0), or with --study the 12 runs of
`experiment=regularization_study` (four regularizers x seeds 0, 1, 2). Each sweep runs as its own
`python -m hymtl.train -m ...` process, as a user would type it; the last line is
`joblib_speedup=<sequential seconds / the fastest joblib layout's seconds>`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def shell_line(command: list[str]) -> str:
    """command as a line to paste into a shell: quoted, and `python` for this interpreter."""
    if command and command[0] == sys.executable:
        command = ["python", *command[1:]]
    return shlex.join(command)


def run_sweep(launcher_args: list[str], common: list[str], sweep_dir: Path) -> float:
    command = [sys.executable, "-m", "hymtl.train", "-m", *launcher_args, *common]
    command.append(f"hydra.sweep.dir={sweep_dir}")
    print("$", shell_line(command), flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"time_sweeps: the sweep failed:\n{result.stderr[-3000:]}")
    print(f"  took {seconds:.1f} s", flush=True)
    return seconds


def accuracies(sweep_dir: Path) -> dict[str, float]:
    """Best val accuracy per regularizer, the mean over its seeds."""
    found: dict[str, list[float]] = {}
    for path in sweep_dir.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        found.setdefault(summary["config"]["regularizer"]["name"], []).append(
            summary["best_val_acc"]
        )
    return {name: sum(values) / len(values) for name, values in found.items()}


def job_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--n-jobs {text!r}: give counts >= 1, e.g. 2 or 2,4")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/hymenoptera_data")
    parser.add_argument("--weights", default=None, help="model.weights_path (offline backbone)")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--n-jobs", type=job_counts, default=[2], help="joblib job counts to time, e.g. 2 or 2,4"
    )
    parser.add_argument("--study", action="store_true", help="time experiment=regularization_study")
    parser.add_argument("--device", default="auto", help="device= of every run (auto, cpu, cuda)")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides for every run"
    )
    parser.add_argument("--out", default=None, help="keep the sweeps here (default: a temp dir)")
    args = parser.parse_args()

    common = [
        f"model={args.model}",
        f"data.root={Path(args.data).resolve()}",
        f"epochs={args.epochs}",
        f"device={args.device}",
        "experiment=regularization_study" if args.study else "regularizer=none,l1,l2,elasticnet",
        *args.set,
    ]
    if args.weights:
        common.append(f"model.weights_path={Path(args.weights).resolve()}")
    out = Path(args.out or tempfile.mkdtemp(prefix="hymtl-time-sweeps-"))
    cores = os.cpu_count()
    layouts = [("basic (sequential, all cores per job)", [], out / "sequential")]
    for n_jobs in args.n_jobs:
        layouts.append(
            (
                f"joblib n_jobs={n_jobs} ({max(1, cores // n_jobs)} threads per job)",
                ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"],
                out / f"joblib{n_jobs}",
            )
        )
    seconds = {name: run_sweep(launcher, common, folder) for name, launcher, folder in layouts}

    runs = "12 runs (4 regularizers x 3 seeds)" if args.study else "4 regularizers"
    print(f"\n{cores} cores, device={args.device}, {args.model}, {runs} x {args.epochs} epochs")
    print("| launcher | wall time (s) | best val acc none/l1/l2/elasticnet (mean over seeds) |")
    print("|---|---|---|")
    for name, _, folder in layouts:
        accs = accuracies(folder)
        regularizers = ("none", "l1", "l2", "elasticnet")
        shown = " / ".join(f"{accs.get(name, float('nan')):.4f}" for name in regularizers)
        print(f"| {name} | {seconds[name]:.1f} | {shown} |")
    print(f"sweeps kept in {out}")
    sequential = seconds[layouts[0][0]]
    fastest = min(seconds[name] for name, _, _ in layouts[1:])
    print(f"joblib_speedup={sequential / fastest:.3f}")


if __name__ == "__main__":
    main()

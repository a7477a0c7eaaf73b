"""Wall time of the four-regularizer sweep: Hydra's basic launcher (one job after another, each
with all cores) against the joblib launcher (n_jobs side by side, cores // n_jobs threads each).

    python scripts/time_sweeps.py --data ../shared/data/hymenoptera_data \
        --weights ../shared/weights/mobilenet_v2_imagenet_features.pth --epochs 3

Each sweep runs as its own `python -m hymtl.train -m ...` process, as a user would type it;
the last line is `joblib_speedup=<sequential seconds / joblib seconds>`.
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
    return seconds


def accuracies(sweep_dir: Path) -> dict[str, float]:
    found = {}
    for path in sweep_dir.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        found[summary["config"]["regularizer"]["name"]] = summary["best_val_acc"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/hymenoptera_data")
    parser.add_argument("--weights", default=None, help="model.weights_path (offline backbone)")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--out", default=None, help="keep the sweeps here (default: a temp dir)")
    args = parser.parse_args()

    common = [
        f"model={args.model}",
        f"data.root={Path(args.data).resolve()}",
        f"epochs={args.epochs}",
        "regularizer=none,l1,l2,elasticnet",
    ]
    if args.weights:
        common.append(f"model.weights_path={Path(args.weights).resolve()}")
    out = Path(args.out or tempfile.mkdtemp(prefix="hymtl-time-sweeps-"))
    sequential = run_sweep([], common, out / "sequential")
    parallel = run_sweep(
        ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}"], common, out / "joblib"
    )
    cores = os.cpu_count()
    print(f"\n{cores} cores, {args.model}, 4 regularizers x {args.epochs} epochs")
    print("| launcher | wall time (s) | best val acc none/l1/l2/elasticnet |")
    print("|---|---|---|")
    joblib_name = f"joblib n_jobs={args.n_jobs} ({max(1, cores // args.n_jobs)} threads per job)"
    for name, seconds, folder in (
        ("basic (sequential, all cores per job)", sequential, out / "sequential"),
        (joblib_name, parallel, out / "joblib"),
    ):
        accs = accuracies(folder)
        regularizers = ("none", "l1", "l2", "elasticnet")
        shown = " / ".join(f"{accs.get(name, float('nan')):.4f}" for name in regularizers)
        print(f"| {name} | {seconds:.1f} | {shown} |")
    print(f"sweeps kept in {out}")
    print(f"joblib_speedup={sequential / parallel:.3f}")


if __name__ == "__main__":
    main()

"""The reference study (`experiment=regularization_study`: 4 regularizers x 3 seeds) timed on
one device with its runs side by side, and a few of its runs again one after another, to show
that running side by side changes the time and not the results.

    python scripts/gpu_study.py --data ../shared/data/hymenoptera_data            # 25 epochs
    python scripts/gpu_study.py --device cpu --epochs 1 --n-jobs 2 --set data.image_size=64 ...

Each study is one `python -m hymtl.train -m experiment=regularization_study ...` process, as a
user would type it, with Hydra's joblib launcher running --n-jobs runs at a time. The
sequential check runs the first --sequential runs of the study (seed 0: none, l1, ...) with the
basic launcher and compares each run's metrics.csv with its twin's in the first study. The last
line is `gpu_study_s=<wall seconds of the fastest whole study>`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from time_sweeps import job_counts, run_sweep

REGULARIZERS = ("none", "l1", "l2", "elasticnet")


def runs_by_name(sweep_dir: Path) -> dict[str, dict]:
    """Each run of a sweep by `<regularizer> seed=<seed>`: its summary and metrics rows."""
    found = {}
    for path in sorted(sweep_dir.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        config = summary["config"]
        with open(path.parent / "metrics.csv") as handle:
            rows = list(csv.DictReader(handle))
        found[f"{config['regularizer']['name']} seed={config['seed']}"] = {
            "summary": summary,
            "rows": rows,
        }
    return found


def log_times(log: Path) -> list[tuple[float, str]]:
    """(unix time, message) of each timestamped line of a run's train.log."""
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("[") and "][" in line:
            stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
            found.append((stamp.timestamp(), line))
    return found


def phases(sweep_dir: Path, started: float, wall: float) -> str:
    """Where a sweep's wall time went: until the last run trained its first epoch, the epochs,
    and after the last run's last line."""
    first_epochs, ends = [], []
    for log in sweep_dir.glob("*/train.log"):
        times = log_times(log)
        epoch_lines = [stamp for stamp, line in times if " epoch 1/" in line]
        if epoch_lines and times:
            first_epochs.append(epoch_lines[0])
            ends.append(times[-1][0])
    if not first_epochs:
        return "no run logged an epoch"
    until_epochs = max(first_epochs) - started
    after = started + wall - max(ends)
    return (
        f"until every run had trained its first epoch {until_epochs:.1f} s, "
        f"after the last run's last log line {after:.1f} s, of {wall:.1f} s"
    )


def largest_difference(rows: list[dict], twin_rows: list[dict], column: str) -> float:
    return max(abs(float(a[column]) - float(b[column])) for a, b in zip(rows, twin_rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/hymenoptera_data")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--weights", default=None, help="model.weights_path (offline backbone)")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n-jobs", type=job_counts, default=[12], help="runs at a time, e.g. 12,4")
    parser.add_argument("--sequential", type=int, default=2, help="runs to repeat one by one")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="keep the studies here (default: a temp dir)")
    args = parser.parse_args()

    common = [
        "experiment=regularization_study",
        f"model={args.model}",
        f"data.root={Path(args.data).resolve()}",
        f"epochs={args.epochs}",
        f"device={args.device}",
        *args.set,
    ]
    if args.weights:
        common.append(f"model.weights_path={Path(args.weights).resolve()}")
    else:
        common.append("model.pretrained=false")  # nothing is downloaded
    out = Path(args.out or tempfile.mkdtemp(prefix="hymtl-gpu-study-"))

    seconds = {}
    for n_jobs in args.n_jobs:
        launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]
        started = time.time()
        seconds[n_jobs] = run_sweep(launcher, common, out / f"joblib{n_jobs}")
        print(f"  {phases(out / f'joblib{n_jobs}', started, seconds[n_jobs])}", flush=True)
    first = runs_by_name(out / f"joblib{args.n_jobs[0]}")
    if len(first) != 12:
        print(f"gpu_study: the study made {len(first)} runs, not 12", file=sys.stderr)
        return 1

    print(f"\n{args.model}, 12 runs x {args.epochs} epochs, device={args.device}")
    print(
        "| runs at a time | wall s | best val acc none / l1 / l2 / elasticnet, mean of 3 seeds "
        "(epoch chosen on val) |"
    )
    print("|---|---|---|")
    for n_jobs, wall in seconds.items():
        runs = runs_by_name(out / f"joblib{n_jobs}")
        means = []
        for regularizer in REGULARIZERS:
            accs = [
                run["summary"]["best_val_acc"]
                for name, run in runs.items()
                if name.startswith(f"{regularizer} ")
            ]
            means.append(f"{100 * sum(accs) / max(len(accs), 1):.2f}")
        print(f"| {n_jobs} | {wall:.1f} | {' / '.join(means)} |")

    if args.sequential:
        chosen = REGULARIZERS[: args.sequential]
        # Command-line sweep values replace the experiment's hydra.sweeper.params for their keys.
        sequential_args = [f"regularizer={','.join(chosen)}", "seed=0"]
        wall = run_sweep(sequential_args, common, out / "sequential")
        print(f"\nthe same runs one after another ({len(chosen)} runs, {wall:.1f} s):")
        print(
            "| run | best val acc, one by one / side by side | largest difference per epoch: "
            "val acc, val loss, train loss |"
        )
        print("|---|---|---|")
        worst = 0.0
        for name, run in runs_by_name(out / "sequential").items():
            twin = first[name]
            best, twin_best = run["summary"]["best_val_acc"], twin["summary"]["best_val_acc"]
            differences = ", ".join(
                f"{largest_difference(run['rows'], twin['rows'], column):.4f}"
                for column in ("val_acc", "val_loss", "train_loss")
            )
            print(f"| {name} | {100 * best:.2f} / {100 * twin_best:.2f} | {differences} |")
            worst = max(worst, largest_difference(run["rows"], twin["rows"], "val_acc"))
        print(f"largest_difference=val acc {100 * worst:.2f} points in any epoch of any run")
    print(f"studies kept in {out}")
    print(f"gpu_study_s={min(seconds.values()):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Check that a run directory is complete and self-consistent (used by CI's real-data smoke test).

python scripts/check_run_dir.py RUN_DIR --epochs 1 --min-accuracy 0.8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hymtl.artifacts import RUN_ARTIFACTS, load_checkpoint, read_metrics


def check(
    run_dir: Path, epochs: int, min_accuracy: float, n_val: int | None, skipped: int | None
) -> list[str]:
    problems = [
        f"{name} missing or empty"
        for name in RUN_ARTIFACTS
        if not (run_dir / name).is_file() or (run_dir / name).stat().st_size == 0
    ]
    if problems:
        return problems
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_metrics(run_dir / "metrics.csv")
    matrix = summary["best_model"]["confusion_matrix"]
    n = sum(map(sum, matrix))
    trace_accuracy = sum(matrix[i][i] for i in range(len(matrix))) / n
    if summary.get("status") != "completed":
        problems.append(f"status is {summary.get('status')}")
    if len(rows) != epochs:
        problems.append(f"metrics.csv has {len(rows)} rows, expected {epochs}")
    if abs(trace_accuracy - summary["best_val_acc"]) > 1e-9:
        problems.append(
            f"confusion-matrix accuracy {trace_accuracy} != best_val_acc {summary['best_val_acc']}"
        )
    if summary["best_val_acc"] < min_accuracy:
        problems.append(f"best val accuracy {summary['best_val_acc']:.4f} < {min_accuracy}")
    if n_val is not None and n != n_val:
        problems.append(f"{n} val images evaluated, expected {n_val}")
    if skipped is not None and len(summary["skipped_files"]) != skipped:
        problems.append(f"{len(summary['skipped_files'])} files skipped, expected {skipped}")
    if load_checkpoint(run_dir / "last.pt")["epoch"] != epochs:
        problems.append("last.pt is not from the last epoch")
    if not problems:
        print(
            f"{run_dir}: complete; best val acc {summary['best_val_acc']:.4f} at epoch "
            f"{summary['best_epoch']}, macro F1 {summary['best_model']['macro']['f1']:.4f}, "
            f"{summary['seconds_per_epoch']:.1f}s/epoch"
        )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--min-accuracy", type=float, default=0.0)
    parser.add_argument("--n-val", type=int)
    parser.add_argument("--skipped", type=int)
    args = parser.parse_args()
    problems = check(args.run_dir, args.epochs, args.min_accuracy, args.n_val, args.skipped)
    for problem in problems:
        print(f"{args.run_dir}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

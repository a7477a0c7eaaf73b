"""Check that a run directory is complete and self-consistent (used by CI's real-data smoke test).

python scripts/check_run_dir.py RUN_DIR --epochs 1 --min-accuracy 0.8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hymtl.run.artifacts import check_run_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--min-accuracy", type=float, default=0.0)
    parser.add_argument("--n-val", type=int)
    parser.add_argument("--skipped", type=int)
    args = parser.parse_args()
    problems = check_run_dir(args.run_dir, args.epochs, args.min_accuracy, args.n_val, args.skipped)
    for problem in problems:
        print(f"{args.run_dir}: {problem}", file=sys.stderr)
    if not problems:
        summary = json.loads((args.run_dir / "summary.json").read_text())
        chosen_on = "select" if "test" in summary else "val"
        line = (
            f"{args.run_dir}: complete; best {chosen_on} acc {summary['best_val_acc']:.4f} at "
            f"epoch {summary['best_epoch']} (chosen on these images), macro F1 "
            f"{summary['best_model']['macro']['f1']:.4f}"
        )
        if "test" in summary:
            line += f"; test acc {summary['test']['accuracy']:.4f} ({summary['test']['n']} images)"
        print(f"{line}, {summary['seconds_per_epoch']:.1f}s/epoch")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

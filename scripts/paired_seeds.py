"""Two settings run with the same seeds, compared seed by seed (paired t-test).

    python scripts/paired_seeds.py --a runs/fp32_a runs/fp32_b --b runs/study/*_none_* \
        --a-name fp32 --b-name bf16 [--regularizer none]
    python scripts/paired_seeds.py --a SWEEP --b SWEEP --a-regularizer none --b-regularizer l1

Every summary.json under the --a and --b folders counts; runs are paired by seed (and must be
completed). Prints a markdown table: best val accuracy per seed, mean ± sd, the mean paired
difference b - a with its 95% t-interval, and the paired t-test p-value.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from scipy import stats

from hymtl.stats import t_interval


def accuracies_by_seed(folders: list[str], regularizer: str | None) -> dict[int, float]:
    found: dict[int, float] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("**/summary.json")):
            summary = json.loads(path.read_text())
            if summary.get("status") != "completed":
                continue
            config = summary["config"]
            if regularizer and config["regularizer"]["name"] != regularizer:
                continue
            if config["seed"] in found:
                sys.exit(f"paired_seeds: seed {config['seed']} twice (again in {path.parent})")
            found[config["seed"]] = summary["best_val_acc"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="+", required=True, help="run or sweep dirs of setting a")
    parser.add_argument("--b", nargs="+", required=True, help="run or sweep dirs of setting b")
    parser.add_argument("--a-name", default="a")
    parser.add_argument("--b-name", default="b")
    parser.add_argument("--regularizer", default=None, help="only runs with this regularizer")
    parser.add_argument("--a-regularizer", default=None, help="... in a (default: --regularizer)")
    parser.add_argument("--b-regularizer", default=None, help="... in b (default: --regularizer)")
    args = parser.parse_args()

    a = accuracies_by_seed(args.a, args.a_regularizer or args.regularizer)
    b = accuracies_by_seed(args.b, args.b_regularizer or args.regularizer)
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        sys.exit(f"paired_seeds: need >= 2 seeds run in both settings; a has {sorted(a)}, "
                 f"b has {sorted(b)}")  # fmt: skip
    print(f"| seed | {args.a_name} | {args.b_name} | {args.b_name} − {args.a_name} |")
    print("|---|---|---|---|")
    for seed in seeds:
        print(f"| {seed} | {100 * a[seed]:.2f} | {100 * b[seed]:.2f} | "
              f"{100 * (b[seed] - a[seed]):+.2f} |")  # fmt: skip
    a_values, b_values = [a[s] for s in seeds], [b[s] for s in seeds]
    diffs = [y - x for x, y in zip(a_values, b_values)]

    def mean_sd(values):
        return f"{100 * statistics.fmean(values):.2f} ± {100 * statistics.stdev(values):.2f}"

    low, high = (100 * bound for bound in t_interval(diffs))
    p = float(stats.ttest_rel(b_values, a_values).pvalue) if len(set(diffs)) > 1 else 1.0
    mean_diff = 100 * statistics.fmean(diffs)
    print(f"| mean ± sd | {mean_sd(a_values)} | {mean_sd(b_values)} | "
          f"{mean_diff:+.2f} (95% CI {low:+.2f} to {high:+.2f}) |")  # fmt: skip
    print(f"\n{len(seeds)} seeds; paired t-test p = {p:.3f}; "
          f"{args.a_name} range {100 * min(a_values):.2f}–{100 * max(a_values):.2f}, "
          f"{args.b_name} range {100 * min(b_values):.2f}–{100 * max(b_values):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

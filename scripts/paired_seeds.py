"""Two settings run with the same seeds, compared seed by seed (paired t-test).

    python scripts/paired_seeds.py --a runs/fp32_a runs/fp32_b --b runs/study/*_none_* \
        --a-name fp32 --b-name bf16 [--regularizer none]
    python scripts/paired_seeds.py --a SWEEP --b SWEEP --a-regularizer none --b-regularizer l1

Every summary.json under the --a and --b folders counts; runs are paired by seed (and must be
completed). Prints a markdown table: best val accuracy per seed, mean ± sd, the mean paired
difference b - a with its 95% t-interval, and the paired t-test p-value 
(hymtl.reporting.stats, the same
test and formatting as hymtl.report).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hymtl.reporting.stats import mean_std, p_text, paired_t_test, percent, percent_mean_std


def accuracies_by_seed(folders: list[str], regularizer: str | None, side: str) -> dict[int, float]:
    """Best val accuracy per seed of the completed runs under folders (of one regularizer).
    A seed found twice is an error: which of the two runs to pair is not ours to guess."""
    runs = []  # (seed, regularizer, accuracy, run dir)
    for folder in folders:
        for path in sorted(Path(folder).glob("**/summary.json")):
            summary = json.loads(path.read_text())
            if summary.get("status") != "completed":
                continue
            config = summary["config"]
            name = config["regularizer"]["name"]
            runs.append((config["seed"], name, summary["best_val_acc"], path.parent))
    found: dict[int, float] = {}
    first_dir: dict[int, Path] = {}
    for seed, name, accuracy, run_dir in runs:
        if regularizer and name != regularizer:
            continue
        if seed in found:
            message = (
                f"paired_seeds: seed {seed} twice in --{side} ({first_dir[seed]} and {run_dir})"
            )
            names = sorted({name for _, name, _, _ in runs})
            if regularizer is None and len(names) > 1:
                message += (
                    f"; its runs have regularizers {', '.join(names)}: choose one with "
                    f"--regularizer NAME, or one per side with --a-regularizer/--b-regularizer"
                )
            sys.exit(message)
        found[seed], first_dir[seed] = accuracy, run_dir
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

    a = accuracies_by_seed(args.a, args.a_regularizer or args.regularizer, "a")
    b = accuracies_by_seed(args.b, args.b_regularizer or args.regularizer, "b")
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        sys.exit(
            f"paired_seeds: need >= 2 seeds run in both settings; a has {sorted(a)}, "
            f"b has {sorted(b)}"
        )
    print(f"| seed | {args.a_name} | {args.b_name} | {args.b_name} − {args.a_name} |")
    print("|---|---|---|---|")
    for seed in seeds:
        diff = f"{100 * (b[seed] - a[seed]):+.2f}"
        print(f"| {seed} | {percent(a[seed])} | {percent(b[seed])} | {diff} |")
    a_values, b_values = [a[s] for s in seeds], [b[s] for s in seeds]
    test = paired_t_test(a_values, b_values)
    low, high = (100 * bound for bound in test["ci"])
    print(
        f"| mean ± sd | {percent_mean_std(mean_std(a_values))} | "
        f"{percent_mean_std(mean_std(b_values))} | "
        f"{100 * test['diff']:+.2f} (95% CI {low:+.2f} to {high:+.2f}) |"
    )
    print(
        f"\n{len(seeds)} seeds; paired t-test p = {p_text(test['p'])}; "
        f"{args.a_name} range {percent(min(a_values))}–{percent(max(a_values))}, "
        f"{args.b_name} range {percent(min(b_values))}–{percent(max(b_values))}"
    )


if __name__ == "__main__":
    main()

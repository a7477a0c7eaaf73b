"""How long one TAB takes: `hymtl -sc query=bash` for a `hymtl train` line, the way bash's
completion script asks it, against `python -c "import torch"` in the same invocation (the
floor a completion that imported the training code could not go below).

    python scripts/completion_time.py                 # 5 rounds, line "hymtl train regularizer="
    python scripts/completion_time.py --rounds 9 --line "hymtl train model."

Prints one row per side (median wall seconds over the rounds, taking turns so machine noise
hits both alike) and the ratio; the last line is `completion_s=<median>`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def seconds(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--line", default="hymtl train regularizer=")
    args = parser.parse_args()
    env = {**os.environ, "COMP_LINE": args.line}
    completion = [sys.executable, "-m", "hymtl", "-sc", "query=bash"]
    torch_import = [sys.executable, "-c", "import torch"]
    times: dict[str, list[float]] = {"completion": [], "import torch": []}
    for _ in range(args.rounds):
        times["completion"].append(seconds(completion, env))
        times["import torch"].append(seconds(torch_import, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"line: {args.line!r}, {args.rounds} rounds, median wall seconds")
    for name, median in medians.items():
        print(f"  {name:<13} {median:6.2f}")
    print(f"  ratio         {medians['completion'] / medians['import torch']:6.2f}")
    print(f"completion_s={medians['completion']:.2f}")


if __name__ == "__main__":
    main()

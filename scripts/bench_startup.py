"""What a hymtl process pays before and after its work, each part against the same process
without hymtl's cut, in alternating rounds of fresh processes (one invocation, one machine):

    python scripts/bench_startup.py --rounds 5

- import: `import hymtl.train` as hymtl does it (torchvision without torch._dynamo: see
  src/hymtl/lazy_dynamo.py) against the same import with torchvision imported first, as any
  script that imports torchvision before hymtl would;
- exit: a process that imported hymtl.train ending through cli.process_exit (no module
  teardown) against `sys.exit` (Python's full teardown), each less the import alone.

The last line is `startup_saved_s=<median import saving + median exit saving>`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "import, torchvision first (dynamo imported)": "import torchvision, hymtl.train",
    "import hymtl.train": "import hymtl.train",
    "import, then sys.exit": "import hymtl.train, sys; sys.exit(0)",
    "import, then exit_process": (
        "import hymtl.train; from hymtl.cli.process_exit import exit_process; exit_process(0)"
    ),
}


def seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    seconds(CASES["import hymtl.train"])  # warm the file cache for every case alike
    for round_ in range(args.rounds):
        names = list(CASES) if round_ % 2 == 0 else list(CASES)[::-1]
        for name in names:
            times[name].append(seconds(CASES[name]))
    median = {name: statistics.median(values) for name, values in times.items()}
    width = max(map(len, CASES))
    print(f"{'process':<{width}}  median s  (each round)")
    for name, values in times.items():
        rounds = ", ".join(f"{value:.2f}" for value in values)
        print(f"{name:<{width}}  {median[name]:8.2f}  ({rounds})")
    import_saved = (
        median["import, torchvision first (dynamo imported)"] - median["import hymtl.train"]
    )
    exit_saved = median["import, then sys.exit"] - median["import, then exit_process"]
    print(
        f"import without dynamo saves {import_saved:.2f} s, exit without teardown {exit_saved:.2f}"
    )
    print(f"startup_saved_s={import_saved + exit_saved:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare the runs of one or more sweeps: `python -m hymtl.report SWEEP_DIR... [--out DIR]`.

Writes report.md, report.csv and comparison.png into DIR (default: the first SWEEP_DIR) and
prints the few numbers people check first. What the report holds and how its tables are made:
hymtl/reporting/ (document.py, from start to end; csv_table.py, report.csv's columns).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from hymtl import UserError
from hymtl.cli.process_exit import run_as_process
from hymtl.errors import OK, USAGE, error
from hymtl.reporting.comparisons import compare_with_none
from hymtl.reporting.document import make_report
from hymtl.reporting.plots import plot_comparison
from hymtl.reporting.reference import summarize_by_regularizer
from hymtl.reporting.runs import Run, find_run_dirs, load_run
from hymtl.reporting.tables import relative

PROGRAM = "hymtl-report"

# The report's pieces that older callers (tests, scripts/chaos.py) import from here.
__all__ = [
    "Run",
    "cli",
    "compare_with_none",
    "find_run_dirs",
    "load_run",
    "main",
    "plot_comparison",
    "summarize_by_regularizer",
]


def invoked_as() -> str:
    """`hymtl report` or `hymtl-report`, as the user typed it, for --help."""
    name = os.path.basename(sys.argv[0])
    return name if name.startswith("hymtl") else PROGRAM


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=invoked_as(), description="Compare the runs of hymtl sweeps (report.md/.csv/.png)."
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR")
    parser.add_argument("--out", type=Path, help="where to write (default: the first SWEEP_DIR)")
    return parser


def regenerate_command(sweep_dirs: list[Path], out: Path | None) -> str:
    """This command line again, with paths below the working directory made relative."""
    command = "python -m hymtl.report " + " ".join(shlex.quote(relative(d)) for d in sweep_dirs)
    return command + (f" --out {shlex.quote(relative(out))}" if out is not None else "")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sweep_dirs = [d.resolve() for d in args.sweep_dirs]
    try:
        out_dir = args.out.resolve() if args.out is not None else sweep_dirs[0]
        command = regenerate_command(sweep_dirs, args.out)
        report, summary = make_report(sweep_dirs, out_dir, command)
    except (UserError, OSError) as exc:
        error(PROGRAM, exc)
        return USAGE
    print(report)
    print(summary)
    return OK


def cli() -> NoReturn:
    """Console script `hymtl-report`."""
    run_as_process(main)  # the whole process: cli.process_exit


if __name__ == "__main__":
    cli()

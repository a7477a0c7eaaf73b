"""A report from start to end: the runs of the sweep dirs, their rows and comparisons, and the
files written from them: report.md (means over seeds, 95% intervals, each regularizer tested
against `none`), report.csv (the same numbers as fractions, csv_table.py), comparison.png (val
curves of every run) and, for a λ search, search.png.

Runs are told apart by their evaluation protocol (config.evaluation.protocol; runs older than
it are `reference`):

- reference: the best epoch is chosen on val/ and reported on val/, so its numbers are
  selection-biased (optimistic). These runs make the "Best-epoch validation metrics" tables
  (reference.py, sections.py).
- holdout, kfold: the epoch is chosen on a select split, and the chosen weights are measured
  once on test images the choice never saw. These runs make the "Test metrics" sections
  (protocols.py, protocol_sections.py), never mixed into the reference tables.

λ-search trials (one run per strength) are listed as trials (search.py), never as seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hymtl.reporting.comparisons import compare_tested, compare_with_none
from hymtl.reporting.console import summary_table
from hymtl.reporting.csv_table import csv_rows, write_csv
from hymtl.reporting.plots import plot_comparison
from hymtl.reporting.protocol_sections import protocol_lines
from hymtl.reporting.protocols import summarize_tested
from hymtl.reporting.reference import summarize_by_regularizer
from hymtl.reporting.rows import weight_statistics
from hymtl.reporting.runs import Run, load_sweeps
from hymtl.reporting.search import search_lines, search_trials
from hymtl.reporting.sections import (
    comparison_lines,
    header_lines,
    metrics_lines,
    problem_lines,
    weight_lines,
)
from hymtl.reporting.settings import TESTED
from hymtl.run.artifacts import atomic_write


@dataclass
class Report:
    """What the report says about its runs: the reference rows and their comparisons, the
    holdout/kfold (tested) rows, their comparisons and notes, and the λ-search trials."""

    runs: list[Run]
    rows: list[dict]
    comparisons: list[dict]
    tested_rows: list[dict] = field(default_factory=list)
    tested_comparisons: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trials: list[dict] = field(default_factory=list)


def analyse(runs: list[Run]) -> Report:
    rows = summarize_by_regularizer(runs)
    tested_rows, notes = summarize_tested(runs)
    return Report(
        runs,
        rows,
        compare_with_none(rows),
        tested_rows,
        compare_tested(tested_rows),
        notes,
        search_trials(runs),
    )


def markdown_lines(report: Report, header: list[str], sweep_dirs: list[Path], out_dir: Path):
    """report.md's lines, section by section (search_lines also draws search.png in out_dir)."""
    reference_trials = [trial for trial in report.trials if trial["protocol"] not in TESTED]
    tested_trials = len(report.trials) - len(reference_trials)
    held_out = bool(report.tested_rows) or tested_trials > 0
    lines = header + metrics_lines(report.rows, reference_trials, held_out)
    lines += comparison_lines(report.rows, report.comparisons, held_out)
    lines += protocol_lines(
        report.tested_rows, report.tested_comparisons, report.notes, tested_trials
    )
    tested = [{**row, "label": f"{row['label']} ({row['protocol']})"} for row in report.tested_rows]
    lines += weight_lines(weight_statistics(report.rows + tested))
    lines += search_lines(report.runs, list(sweep_dirs), out_dir)
    return lines + problem_lines(report.runs) + ["", "![comparison](comparison.png)", ""]


def write_report(report: Report, out_dir: Path, header: list[str], sweep_dirs=()) -> Path:
    """report.md, report.csv, comparison.png (and search.png for a λ search) in out_dir;
    returns the path of report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = markdown_lines(report, header, list(sweep_dirs), out_dir)
    plot_comparison(report.runs, out_dir / "comparison.png")
    table = csv_rows(report.rows, report.comparisons, report.tested_rows)
    atomic_write(out_dir / "report.csv", lambda tmp: write_csv(tmp, table))
    atomic_write(out_dir / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines)))
    return out_dir / "report.md"


def make_report(sweep_dirs: list[Path], out_dir: Path, command: str) -> tuple[Path, str]:
    """The report of the runs below sweep_dirs, written into out_dir: (report.md's path, the
    summary for the terminal). command: how to make it again, for report.md's header."""
    runs = load_sweeps(sweep_dirs)
    report = analyse(runs)
    header = header_lines(runs, sweep_dirs, command, report.rows)
    path = write_report(report, out_dir, header, sweep_dirs)
    return path, summary_table(report.rows, report.comparisons, report.trials, report.tested_rows)

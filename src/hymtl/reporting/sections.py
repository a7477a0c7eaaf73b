"""report.md's sections other than the holdout/kfold ones (protocol_sections.py) and the λ
search (search.py): the header, the reference-protocol tables, final weights, failed and
incomplete runs. Each function returns the section's markdown lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hymtl.reporting.runs import Run, config_value
from hymtl.reporting.settings import TESTED, regularizer_order, run_protocol, trial_runs
from hymtl.reporting.stats import MIN_PAIRED_SEEDS, percent_interval, percent_mean_std
from hymtl.reporting.tables import (
    distinct,
    markdown_table,
    number,
    percent_points,
    readable,
    relative,
)

PROTOCOL_MEANINGS = {
    "reference": "epoch chosen and measured on the same val images: selection-biased",
    "holdout": "epoch chosen on a select split, val/ held out as the test set",
    "kfold": "epoch chosen on a select split, one fold held out as the test set",
}


def header_lines(runs: list[Run], sweep_dirs: list[Path], command: str, rows: list[dict]):
    """The title, what was read, the run counts, and notes on what was kept apart."""
    attempts = set_up_failures(runs)
    trained = [run for run in runs if run not in attempts]
    count = {s: sum(r.status == s for r in trained) for s in ("completed", "failed", "incomplete")}
    completed = [run for run in runs if run.status == "completed"]
    reference = [run for run in completed if run_protocol(run) not in TESTED]
    tested = [run for run in completed if run_protocol(run) in TESTED]
    models = {config_value(run, "model", "name") for run in trained} - {None}
    images = f"; val images: {distinct(run.summary.get('n_val') for run in reference)}"
    if tested:
        n_test = distinct((run.summary.get("evaluation") or {}).get("n_test") for run in tested)
        images = (images if reference else "") + f"; test images per run: {n_test}"
    lines = [
        "# Regularization study report",
        "",
        f"- read: {', '.join(f'`{relative(d)}`' for d in sweep_dirs)} ({len(runs)} run dirs)",
        f"- runs: {count['completed']} completed, {count['failed']} failed, "
        f"{count['incomplete']} incomplete"
        + (f"; {len(attempts)} more failed before training (not runs)" if attempts else ""),
        f"- model: {distinct(models)}; "
        f"epochs: {distinct(config_value(r, 'epochs') for r in trained)}" + images,
        "- " + protocols_text(runs),
        f"- regenerate: `{command}`",
    ]
    if len(models) > 1:
        lines.append("- **note:** runs of different models are in separate rows, never pooled")
    return lines + header_notes(runs, rows)


def header_notes(runs: list[Run], rows: list[dict]) -> list[str]:
    """Notes on λ-search trials (not seeds) and on seeds shared across sweep dirs (reruns)."""
    lines = []
    trials = Counter(run.regularizer for run in trial_runs(runs))
    for name in regularizer_order(trials):
        varied = "α/β (an l2sp strength search)" if name == "l2sp" else "λ (a λ search)"
        lines.append(
            f"- **note:** the `{name}` runs differ in {varied}: its {trials[name]} "
            "single-seed runs are trials, listed in the λ search section, not averaged as seeds"
        )
    shared: dict[tuple, list[str]] = {}
    for row in rows:
        if row["sweep"] is not None:
            shared.setdefault(row["setting"], []).append(row["sweep"])
    for setting, sweeps in shared.items():
        lines.append(
            f"- **note:** `{setting.regularizer}` runs of one setting share seeds across "
            f"{', '.join(f'`{sweep}`' for sweep in sweeps)}: a repeated seed is a rerun, not "
            "another sample, so these are rows side by side, never averaged"
        )
    return lines


def protocols_text(runs: list[Run]) -> str:
    """The header's line on evaluation protocols: which ones the runs used, and what each means."""
    count = Counter(run_protocol(run) for run in runs)
    parts = [
        f"{name} ({count[name]} runs: {PROTOCOL_MEANINGS.get(name, 'unknown protocol')})"
        for name in sorted(count, key=lambda name: (name not in PROTOCOL_MEANINGS, name))
    ]
    return "evaluation protocol: " + ("; ".join(parts) or "none")


def metrics_lines(rows: list[dict], trials: list[dict] = (), tested: bool = False) -> list[str]:
    """The reference-protocol table; [] when there is none but holdout/kfold runs (tested: rows
    or λ-search trials of those protocols)."""
    if not rows and not trials and tested:
        return []
    lines = [
        "",
        "## Best-epoch validation metrics (reference protocol: chosen and measured on the same "
        "val images, selection-biased; %, mean ± std over seeds)",
        "",
    ]
    if not rows:
        if trials:
            return lines + [f"Only λ-search trials ({len(trials)}): see the λ search section."]
        return lines + ["No completed runs yet."]
    header = (
        "Regularizer | Precision | Recall | F1 | Accuracy | 95% CI (accuracy) | n val | n seeds"
    ).split(" | ")
    calibrated = any(row["calibration"]["n_runs"] for row in rows)
    header += ["ECE", "Brier"] if calibrated else []
    lines += markdown_table(header, [metrics_cells(row, calibrated) for row in rows])
    return lines + metrics_notes(rows, trials, calibrated)


def metrics_cells(row: dict, calibrated: bool) -> list:
    cells = [row["label"]]
    cells += [percent_mean_std(row[m]) for m in ("precision", "recall", "f1", "accuracy")]
    cells += [percent_interval(row["accuracy_ci"]), row["n_val"], row["n_seeds"]]
    if calibrated:
        cells += [number(row["calibration"]["ece"]), number(row["calibration"]["brier"])]
    return cells


def metrics_notes(rows: list[dict], trials: list[dict], calibrated: bool) -> list[str]:
    """What the reference table's numbers are, and which interval each row has."""
    by_method = {m: [r["label"] for r in rows if r["ci_method"] == m] for m in ("t", "wilson")}
    lines = [
        "",
        "Precision, recall and F1 are macro averages over classes at each run's best val epoch "
        "(`best_model` in summary.json); ± is the sample std over seeds (ddof=1). That epoch is "
        "chosen on the same val images, so these numbers lean optimistic, equally for all rows. "
        "A row is one setting (model, regularizer, λ, epochs); n seeds counts distinct seeds.",
    ]
    if any(row["sweep"] is not None for row in rows):
        lines.append(
            "A row named `(sweep dir)` shares its seeds with another row of the same setting: "
            "reruns of a seed are shown side by side, never averaged as if they were seeds."
        )
    if trials:
        lines.append(
            f"Not in this table: {len(trials)} λ-search trials (one run per λ): trials, not "
            "seeds; see the λ search section."
        )
    if by_method["t"]:
        lines.append(
            f"95% CI for {', '.join(by_method['t'])}: t-interval over seeds, "
            "mean ± t(0.975, n-1)·s/√n, clipped to [0, 100]."
        )
    if by_method["wilson"]:
        lines.append(
            f"95% CI for {', '.join(by_method['wilson'])} (one seed): Wilson score interval "
            "for correct/n val (spread over images only, not over seeds)."
        )
    if calibrated:
        lines.append(
            "ECE (equal-width confidence bins) and Brier: the selected weights on val/, mean "
            "over the runs that recorded them (summary.json `calibration`; – for older runs)."
        )
    return lines


def comparison_lines(rows: list[dict], comparisons: list[dict], tested: bool = False) -> list[str]:
    """The reference rows against `none`; [] when there are none but holdout/kfold runs."""
    if not rows:  # nothing to compare: the metrics section already says why
        return []
    lines = ["", "## Each regularizer against `none` (best-epoch val accuracy, reference)", ""]
    if not any(row["regularizer"] == "none" for row in rows):
        return lines + ["No completed `none` run: nothing to compare against."]
    if not comparisons:
        return lines + ["Only `none` has completed runs averaged over seeds so far."]
    lines += markdown_table(
        ["Regularizer", "Δ accuracy (pp)", "95% CI (pp)", "p", "Test", "Verdict"],
        [
            [c["label"], percent_points(c["diff"]), percent_interval(c["ci"])]
            + [c["p_text"], c["test"], c["verdict"]]
            for c in comparisons
        ],
    )
    return lines + [
        "",
        "Δ = regularizer − none, against the `none` row of the same model and epochs (and sweep "
        "dir, for rows shown per sweep dir). Paired t-test: runs paired by seed (seeds present "
        "in both), interval = paired-difference t-interval; with fewer than "
        f"{MIN_PAIRED_SEEDS} shared seeds no test is made (a t-test on 1 degree of freedom is "
        "no verdict), the difference and its interval are still shown. Exact McNemar (one "
        "seed): b = images only `none` got right, c = images only the other got right, p = "
        "two-sided binomial "
        "test of min(b, c) out of b + c; interval = Wald interval for paired proportions. "
        "No correction for testing several regularizers.",
    ]


def weight_lines(weights: list[dict]) -> list[str]:
    if not weights:
        return []
    lines = ["", "## Final weights (mean over seeds): what each penalty did", ""]
    lines += markdown_table(
        ["Regularizer", r"Σ\|w\|", "Σw²", r"fraction \|w\| < 1e-3", "runs"],
        [
            [w["regularizer"], readable(w["sum_abs"]), readable(w["sum_sq"])]
            + ["–" if w["near_zero"] is None else f"{w['near_zero']:.4f}", w["n_runs"]]
            for w in weights
        ],
    )
    return lines + ["", "Over all trainable parameters of the final (last-epoch) model."]


def set_up_failures(runs: list[Run]) -> list[Run]:
    """Failed run dirs without one epoch trained: attempts that stopped at set-up (a wrong
    data.root, a refused config), counted and listed apart from runs."""
    return [run for run in runs if run.status == "failed" and not run.metrics]


def problem_lines(runs: list[Run]) -> list[str]:
    attempts = set_up_failures(runs)
    failed = [run for run in runs if run.status == "failed" and run not in attempts]
    incomplete = [run for run in runs if run.status == "incomplete"]
    lines = ["", f"## Failed runs ({len(failed)})", ""]
    lines += [f"- `{run.path}`: {run.error}" for run in failed] or ["None."]
    if attempts:
        lines += ["", f"## Failed before training ({len(attempts)}: no epoch trained)", ""]
        lines += [f"- `{run.path}`: {run.error}" for run in attempts]
    lines += ["", f"## Incomplete runs ({len(incomplete)}: still running or killed)", ""]
    for run in incomplete:
        planned = config_value(run, "epochs") or "?"
        note = f" ({run.error})" if run.error else ""
        lines.append(f"- `{run.path}`: {len(run.metrics)}/{planned} epochs done{note}")
    return lines + ([] if incomplete else ["None."])

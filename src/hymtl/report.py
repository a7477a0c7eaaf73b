"""Compare the runs of one or more sweeps: `python -m hymtl.report SWEEP_DIR... [--out DIR]`.

Writes report.md (means over seeds, 95% intervals, each regularizer tested against `none`),
report.csv (the same numbers as fractions) and comparison.png (val curves of every run).

Runs are told apart by their evaluation protocol (config.evaluation.protocol; runs older than
it are `reference`):

- reference: the best epoch is chosen on val/ and reported on val/, so its numbers are
  selection-biased (optimistic). These runs make the "Best-epoch validation metrics" tables here.
- holdout, kfold: the epoch is chosen on a select split, and the chosen weights are measured
  once on test images the choice never saw. These runs make the "Test metrics" sections
  (protocol_report.py), never mixed into the reference tables.

A reference row is one setting: (model, regularizer, strengths (λ1, λ2, α, β), epochs). Its
runs are repeats that differ in seed, and only distinct seeds are averaged: runs of one setting
that share a seed (the same sweep read twice, or two sweeps run with seed 0) are shown side by
side, one row per sweep dir, never pooled. Runs of a regularizer tried at several strengths with
one seed each are λ-search trials, listed as trials (search_report.py), never as seeds.

report.csv: one line per row of both kinds. The first columns are the reference table's
(`regularizer` ... `sweep_dir`); then `protocol` (reference, holdout or kfold), `test_set`
(holdout/kfold: which test images), `n_runs`, `selection_accuracy_mean` (the best val accuracy
that chose the epoch), `ece_mean`, `brier_mean`, `nll_mean` (summary.json `calibration`, empty
for runs without it) and l2sp's `alpha`, `beta`. On a holdout/kfold line the `accuracy_*`,
`precision_*`, `recall_*`, `f1_*`, `diff_*` and `p_value` columns are TEST metrics, `n_val` is
the test images per run and `n_seeds` the distinct training seeds among its `n_runs` runs; on a
reference line they are the best epoch's val metrics.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hymtl import UserError
from hymtl.reporting.protocols import (
    TESTED,
    calibration_means,
    choose_reference,
    compare_tested,
    csv_records,
    number,
    protocol_lines,
    read_predictions,
    split_repeated,
    summarize_tested,
    summary_lines,
    trial_summary,
)
from hymtl.reporting.search import (
    KNOWN_ORDER,
    run_protocol,
    search_lines,
    search_trials,
    setting,
    strength_text,
    trial_runs,
)
from hymtl.reporting.stats import (
    MIN_PAIRED_SEEDS,
    mcnemar,
    mean_std,
    p_text,
    paired_t_test,
    percent_interval,
    percent_mean_std,
    t_interval,
    wilson_interval,
)
from hymtl.run.artifacts import atomic_write, read_metrics
from hymtl.run.rundir import MLFLOW_ARTIFACTS_DIR
from hymtl.training.plots import whole_epochs

RUN_MARKERS = (".hydra/config.yaml", "summary.json", "metrics.csv")
NEAR_ZERO_KEY = (
    "fraction_abs_below_0.001"  # written by hymtl.training.regularizers.weight_statistics
)
CSV_COLUMNS = (
    "regularizer,n_seeds,n_val,precision_mean,precision_std,recall_mean,recall_std,f1_mean,"
    "f1_std,accuracy_mean,accuracy_std,accuracy_ci_low,accuracy_ci_high,diff_vs_none,"
    "diff_ci_low,diff_ci_high,p_value,test,model,lambda_l1,lambda_l2,epochs,sweep_dir,"
    "protocol,test_set,n_runs,selection_accuracy_mean,ece_mean,brier_mean,nll_mean,alpha,beta"
).split(",")


@dataclass
class Run:
    path: Path
    status: str  # "completed", "failed" or "incomplete" (no summary.json yet: running or killed)
    regularizer: str
    seed: int | None
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    error: str = ""
    sweep_dir: Path | None = None  # the SWEEP_DIR argument it was found under


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Folders at any depth below sweep_dir (itself included) holding one of RUN_MARKERS."""
    found = set()
    for marker in RUN_MARKERS:
        for hit in Path(sweep_dir).glob(f"**/{marker}"):
            found.add(hit.parents[marker.count("/")])

    # RUN/resumed/<time>/ holds only the log and .hydra of a resume invocation, not a run,
    # RUN/replaced-<time>/ an earlier run that overwrite=true or a sweep re-run moved aside, and
    # mlruns/ logger=mlflow's copies of run files (hymtl/tracking/__init__.py).
    def counted(path: Path) -> bool:
        parts = path.relative_to(sweep_dir).parts
        skipped = ("resumed", MLFLOW_ARTIFACTS_DIR)
        return not any(part in skipped or part.startswith("replaced-") for part in parts)

    return sorted(path for path in found if counted(path))


def read_config(run_dir: Path, summary: dict) -> dict:
    if isinstance(summary.get("config"), dict):
        return summary["config"]
    try:
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    except (OSError, yaml.YAMLError, OmegaConfBaseException):
        return {}
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        # e.g. a resolver only registered at training time; names and seeds are plain values
        return OmegaConf.to_container(cfg, resolve=False)


def load_run(run_dir: Path) -> Run:
    summary, error = {}, ""
    if (run_dir / "summary.json").is_file():
        try:
            summary = json.loads((run_dir / "summary.json").read_text())
        except (OSError, ValueError) as exc:
            summary, error = {"status": "failed"}, f"summary.json unreadable: {exc}"
    metrics = []
    if (run_dir / "metrics.csv").is_file():
        try:
            metrics = read_metrics(run_dir / "metrics.csv")
        except (OSError, ValueError, TypeError) as exc:  # e.g. a half-written last row
            error = error or f"metrics.csv unreadable: {exc}"
    status = summary.get("status", "completed") if summary else "incomplete"
    if status == "interrupted":  # stopped by Ctrl-C/SIGTERM; resumable, not failed
        status = "incomplete"
    if status == "completed" and "best_model" not in summary:
        status, error = "failed", error or "summary.json has no best_model"
    elif status not in ("completed", "incomplete"):
        error = error or summary.get("error") or f"summary.json says status={status!r}"
        status = "failed"
    config = read_config(run_dir, summary)
    regularizer = config.get("regularizer")
    name = regularizer.get("name", "unknown") if isinstance(regularizer, dict) else "unknown"
    return Run(run_dir, status, str(name), config.get("seed"), config, summary, metrics, error)


def regularizer_order(names) -> list[str]:
    """none, l1, l2, elasticnet, l2sp first (KNOWN_ORDER), then any others by name."""
    rank = {name: index for index, name in enumerate(KNOWN_ORDER)}
    return sorted(set(names), key=lambda name: (rank.get(name, len(rank)), name))


def accuracy(run: Run) -> float:
    return run.summary["best_model"]["accuracy"]


def split_repeated_seeds(group: list[Run]) -> list[tuple[str | None, list[Run]]]:
    """The runs of one setting as (sweep label, runs) parts whose seeds are distinct: one part
    when no seed repeats; else one per sweep dir (a repeated seed is a rerun, not a new sample),
    and within a sweep dir that repeats a seed itself, one per run."""
    return split_repeated(group, lambda run: run.seed)


def seed_statistics(group: list[Run]) -> dict:
    """Mean ± std and a 95% interval of the best-epoch metrics of runs with distinct seeds."""
    best = [run.summary["best_model"] for run in group]
    row = {"runs": group, "n_seeds": len(group)}
    row["n_val"] = "/".join(
        sorted({str(run.summary.get("n_val", b["n"])) for run, b in zip(group, best)})
    )
    for metric in ("precision", "recall", "f1"):
        row[metric] = mean_std([b["macro"][metric] for b in best])
    accuracies = [b["accuracy"] for b in best]
    row["accuracy"] = mean_std(accuracies)
    if len(group) > 1:
        row["accuracy_ci"], row["ci_method"] = t_interval(accuracies, bounds=(0.0, 1.0)), "t"
    else:  # one run: the only spread left to show is binomial (which images were sampled)
        n = best[0]["n"]
        row["accuracy_ci"] = wilson_interval(round(accuracies[0] * n), n)
        row["ci_method"] = "wilson"
    row["calibration"] = calibration_means(group)
    return row


def label_rows(rows: list[dict], lambdas: dict[str, set]) -> None:
    """Name each row by its regularizer, plus whatever else tells it apart from the others:
    λ or α/β (when its regularizer ran at several, trials included: lambdas maps regularizer
    to the strengths it ran with), model, epochs, and the sweep dir."""
    models = {row["setting"][0] for row in rows}
    epochs = {row["setting"][3] for row in rows}
    for row in rows:
        model, name, values, n_epochs = row["setting"]
        parts = [name]
        if len(lambdas[name]) > 1:
            parts.append(strength_text(values))
        if len(models) > 1:
            parts.append(str(model))
        if len(epochs) > 1:
            parts.append(f"{n_epochs} epochs")
        row["label"] = ", ".join(parts) + (f" ({row['sweep']})" if row["sweep"] else "")


def summarize_by_regularizer(runs: list[Run]) -> list[dict]:
    """One row per setting (model, regularizer, strengths, epochs) over its completed
    reference-protocol runs, from each run's best-epoch metrics, averaged over distinct seeds
    only (split_repeated_seeds). λ-search trials are left out: search_report lists them as
    trials. holdout/kfold runs are left out: protocol_report.summarize_tested makes their rows."""
    runs = [run for run in runs if run_protocol(run) not in TESTED]
    trials = {run.path for run in trial_runs(runs)}
    completed = [run for run in runs if run.status == "completed" and run.path not in trials]
    groups: dict[tuple, list[Run]] = {}
    for run in completed:
        groups.setdefault(setting(run), []).append(run)
    lambdas: dict[str, set] = {}
    for run in runs:
        if run.status == "completed":
            lambdas.setdefault(run.regularizer, set()).add(setting(run)[2])
    rank = {name: i for i, name in enumerate(regularizer_order(run.regularizer for run in runs))}

    def order(key: tuple):
        model, name, strengths, epochs = key
        return rank[name], str(model), epochs is None, epochs or 0, strengths

    rows = []
    for key in sorted(groups, key=order):
        group = sorted(groups[key], key=lambda run: str(run.seed))
        for sweep, members in split_repeated_seeds(group):
            row = {"regularizer": key[1], "setting": key, "sweep": sweep}
            rows.append({**row, **seed_statistics(members)})
    label_rows(rows, lambdas)
    return rows


def read_val_predictions(run: Run) -> tuple[list[str], list[int]] | None:
    return read_predictions(run.path / "val_predictions.csv")


def paired_t_comparison(reference: list[Run], other: list[Run]) -> dict:
    """Paired t-test over the shared seeds; with fewer than MIN_PAIRED_SEEDS of them no test is
    made (p None, "no test possible (2 seeds)"): the difference and its interval are shown,
    but a p-value on one degree of freedom is no verdict."""
    result = paired_t_test([accuracy(run) for run in reference], [accuracy(run) for run in other])
    if result["n"] < MIN_PAIRED_SEEDS:
        reason = f"no test possible ({result['n']} seeds)"
        shown = "–" if result["p"] is not None else p_text(None)  # or: no variance either
        return {**result, "p": None, "t": None, "test": reason, "p_text": shown}
    return {
        **result,
        "test": f"paired t-test over {result['n']} seeds",
        "p_text": p_text(result["p"]),
    }


def single_pair_comparison(reference: Run, other: Run) -> dict:
    ref_pred, other_pred = read_val_predictions(reference), read_val_predictions(other)
    if ref_pred and other_pred and ref_pred[0] == other_pred[0]:
        result = mcnemar(ref_pred[1], other_pred[1])
        test = f"exact McNemar (b={result['b']}, c={result['c']}, {result['n']} images)"
        return {**result, "test": test}
    diff = accuracy(other) - accuracy(reference)
    return {"diff": diff, "ci": None, "p": None, "test": "no test: no matching val_predictions"}


def reference_row(row: dict, references: list[dict]) -> dict | None:
    """The `none` row to test `row` against: same model and epochs; among several (e.g. `none`
    shown per sweep dir), the one from row's sweep dir. None when no single row fits."""
    model, _, _, epochs = row["setting"]
    candidates = [
        ref for ref in references if (ref["setting"][0], ref["setting"][3]) == (model, epochs)
    ]
    return choose_reference(row, candidates)


def compare_with_none(rows: list[dict]) -> list[dict]:
    """Each row against its `none` row (reference_row): paired by seed when ≥2 seeds are
    shared, else by image."""
    references = [row for row in rows if row["regularizer"] == "none"]
    if not references:
        return []
    comparisons = []
    for row in rows:
        if row["regularizer"] == "none":
            continue
        none_row = reference_row(row, references)
        if none_row is None:  # e.g. no `none` run of this model: a difference would mean nothing
            test = "no test: no single `none` row of the same model, epochs and sweep"
            result = {"diff": None, "ci": None, "p": None, "p_text": "–", "test": test}
            comparisons.append(
                {"regularizer": row["regularizer"], "label": row["label"], "verdict": "not tested"}
                | result
            )
            continue
        reference = {run.seed: run for run in none_row["runs"]}
        other = {run.seed: run for run in row["runs"]}
        common = sorted(set(reference) & set(other), key=str)
        if len(common) >= 2:
            result = paired_t_comparison([reference[s] for s in common], [other[s] for s in common])
        elif len(common) == 1 or (len(reference) == 1 and len(other) == 1):
            pair = (
                (reference[common[0]], other[common[0]])
                if common
                else (next(iter(reference.values())), next(iter(other.values())))
            )
            result = single_pair_comparison(*pair)
        else:
            diff = row["accuracy"][0] - none_row["accuracy"][0]
            result = {"diff": diff, "ci": None, "p": None, "test": "no test: no seeds in common"}
        if result["p"] is None:
            verdict = "not tested"
        else:
            verdict = "significant (p<0.05)" if result["p"] < 0.05 else "not significant"
        result.setdefault("p_text", "–" if result["p"] is None else p_text(result["p"]))
        comparisons.append(
            {"regularizer": row["regularizer"], "label": row["label"], "verdict": verdict, **result}
        )
    return comparisons


def weight_statistics_by_regularizer(rows: list[dict]) -> list[dict]:
    """Mean over seeds of each run's final_weights (older runs lack them and are left out)."""
    table = []
    for row in rows:
        weights = [w for w in (run.summary.get("final_weights") for run in row["runs"]) if w]
        if weights:
            near_zero = [w[NEAR_ZERO_KEY] for w in weights if NEAR_ZERO_KEY in w]
            table.append(
                {
                    "regularizer": row["label"],
                    "n_runs": len(weights),
                    "sum_abs": statistics.fmean(w["sum_abs"] for w in weights),
                    "sum_sq": statistics.fmean(w["sum_sq"] for w in weights),
                    "near_zero": statistics.fmean(near_zero) if near_zero else None,
                }
            )
    return table


def percent_points(diff: float | None) -> str:
    return "–" if diff is None else f"{100 * diff:+.2f}"


def readable(value: float) -> str:
    """Σ|w| of a whole network is ~1e5, of a head alone ~1e-1: thousands separators or 4 digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def distinct(values) -> str:
    return ", ".join(sorted({str(v) for v in values if v is not None})) or "unknown"


def config_value(run: Run, *keys: str):
    value = run.config
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def relative(path: Path) -> str:
    """A path as the report shows it: relative to where the command ran when it lies below it
    (a committed report then names no machine's folders, and its regenerate command runs from
    any checkout), else as given."""
    path = Path(path).absolute()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def header_lines(
    runs: list[Run], sweep_dirs: list[Path], command: str, rows: list[dict] | None = None
) -> list[str]:
    count = {s: sum(r.status == s for r in runs) for s in ("completed", "failed", "incomplete")}
    completed = [run for run in runs if run.status == "completed"]
    reference = [run for run in completed if run_protocol(run) not in TESTED]
    tested = [run for run in completed if run_protocol(run) in TESTED]
    models = {config_value(run, "model", "name") for run in runs} - {None}
    images = f"; val images: {distinct(run.summary.get('n_val') for run in reference)}"
    if tested:
        n_test = distinct((run.summary.get("evaluation") or {}).get("n_test") for run in tested)
        images = (images if reference else "") + f"; test images per run: {n_test}"
    lines = [
        "# Regularization study report",
        "",
        f"- read: {', '.join(f'`{relative(d)}`' for d in sweep_dirs)} ({len(runs)} run dirs)",
        f"- runs: {count['completed']} completed, {count['failed']} failed, "
        f"{count['incomplete']} incomplete",
        f"- model: {distinct(models)}; epochs: {distinct(config_value(r, 'epochs') for r in runs)}"
        + images,
        "- " + protocols_text(runs),
        f"- regenerate: `{command}`",
    ]
    if len(models) > 1:
        lines.append("- **note:** runs of different models are in separate rows, never pooled")
    trials = Counter(run.regularizer for run in trial_runs(runs))
    for name in regularizer_order(trials):
        varied = "α/β (an l2sp strength search)" if name == "l2sp" else "λ (a λ search)"
        lines.append(
            f"- **note:** the `{name}` runs differ in {varied}: its {trials[name]} "
            "single-seed runs are trials, listed in the λ search section, not averaged as seeds"
        )
    rows = summarize_by_regularizer(runs) if rows is None else rows
    shared: dict[tuple, list[str]] = {}
    for row in rows:
        if row["sweep"] is not None:
            shared.setdefault(row["setting"], []).append(row["sweep"])
    for (_, name, _, _), sweeps in shared.items():
        lines.append(
            f"- **note:** `{name}` runs of one setting share seeds across "
            f"{', '.join(f'`{sweep}`' for sweep in sweeps)}: a repeated seed is a rerun, not "
            "another sample, so these are rows side by side, never averaged"
        )
    return lines


def protocols_text(runs: list[Run]) -> str:
    """The header's line on evaluation protocols: which ones the runs used, and what each means."""
    count = Counter(run_protocol(run) for run in runs)
    meaning = {
        "reference": "epoch chosen and measured on the same val images: selection-biased",
        "holdout": "epoch chosen on a select split, val/ held out as the test set",
        "kfold": "epoch chosen on a select split, one fold held out as the test set",
    }
    parts = [
        f"{name} ({count[name]} runs: {meaning.get(name, 'unknown protocol')})"
        for name in sorted(count, key=lambda name: (name not in meaning, name))
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
    lines += markdown_table(
        header,
        [
            [row["label"]]
            + [percent_mean_std(row[m]) for m in ("precision", "recall", "f1", "accuracy")]
            + [percent_interval(row["accuracy_ci"]), row["n_val"], row["n_seeds"]]
            + (
                [number(row["calibration"]["ece"]), number(row["calibration"]["brier"])]
                if calibrated
                else []
            )
            for row in rows
        ],
    )
    by_method = {m: [r["label"] for r in rows if r["ci_method"] == m] for m in ("t", "wilson")}
    lines += [
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
    if not rows and tested:
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


def problem_lines(runs: list[Run]) -> list[str]:
    failed = [run for run in runs if run.status == "failed"]
    incomplete = [run for run in runs if run.status == "incomplete"]
    lines = ["", f"## Failed runs ({len(failed)})", ""]
    lines += [f"- `{run.path}`: {run.error}" for run in failed] or ["None."]
    lines += ["", f"## Incomplete runs ({len(incomplete)}: still running or killed)", ""]
    for run in incomplete:
        planned = config_value(run, "epochs") or "?"
        note = f" ({run.error})" if run.error else ""
        lines.append(f"- `{run.path}`: {len(run.metrics)}/{planned} epochs done{note}")
    return lines + ([] if incomplete else ["None."])


def plot_comparison(runs: list[Run], path: Path) -> Figure:
    """Val accuracy and val loss per epoch of every run; one colour per regularizer."""
    plotted = [run for run in runs if run.metrics and run.status != "failed"]
    names = regularizer_order(run.regularizer for run in plotted)
    colors = {name: f"C{index % 10}" for index, name in enumerate(names)}
    fig = Figure(figsize=(12, 5), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    for run in plotted:
        epochs = [row["epoch"] for row in run.metrics]
        style = {"color": colors[run.regularizer], "lw": 1, "alpha": 0.8, "marker": "o", "ms": 3}
        style["ls"] = "-" if run.status == "completed" else "--"
        ax_acc.plot(epochs, [row["val_acc"] for row in run.metrics], **style)
        ax_loss.plot(epochs, [row["val_loss"] for row in run.metrics], **style)
    # "val" is whatever chose each run's epoch: val/, or the select split (holdout, kfold).
    which = "val/select images, which choose the epoch"
    ax_acc.set(xlabel="epoch", ylabel="val accuracy", title=f"val accuracy per epoch ({which})")
    ax_loss.set(xlabel="epoch", ylabel="val cross-entropy", title=f"val loss per epoch ({which})")
    all_epochs = [row["epoch"] for run in plotted for row in run.metrics]
    for ax in (ax_acc, ax_loss):
        whole_epochs(ax, all_epochs)
    if plotted:
        handles = [Line2D([], [], color=colors[name], marker="o", label=name) for name in names]
        # Below the axes, so the legend never covers a run's points.
        ax_acc.legend(
            handles=handles,
            title="regularizer",
            loc="upper center",
            bbox_to_anchor=(1.1, -0.14),
            ncol=len(handles),
            frameon=False,
        )
    else:
        for ax in (ax_acc, ax_loss):
            ax.text(0.5, 0.5, "no metrics.csv rows yet", ha="center", va="center")
    dashed = " (dashed = incomplete)" if any(r.status != "completed" for r in plotted) else ""
    fig.suptitle(f"{len(plotted)} runs, one colour per regularizer{dashed}")
    fig.savefig(path, dpi=100)
    return fig


def csv_rows(rows: list[dict], comparisons: list[dict], tested: list[dict] = ()) -> list[dict]:
    """report.csv's lines: the reference rows, then the holdout/kfold rows (module docstring)."""
    by_label = {c["label"]: c for c in comparisons}
    table = []
    for row in rows:
        record = {"regularizer": row["regularizer"], "n_seeds": row["n_seeds"]}
        record["n_val"] = row["n_val"]
        for metric in ("precision", "recall", "f1", "accuracy"):
            record[f"{metric}_mean"], record[f"{metric}_std"] = row[metric]
        record["accuracy_ci_low"], record["accuracy_ci_high"] = row["accuracy_ci"]
        comparison = by_label.get(row["label"], {})
        record["diff_vs_none"] = comparison.get("diff")
        record["diff_ci_low"], record["diff_ci_high"] = comparison.get("ci") or (None, None)
        record["p_value"], record["test"] = comparison.get("p"), comparison.get("test")
        model, _, strengths, epochs = row["setting"]
        record["lambda_l1"], record["lambda_l2"], record["alpha"], record["beta"] = strengths
        record["model"], record["epochs"], record["sweep_dir"] = model, epochs, row["sweep"]
        record |= {"protocol": "reference", "n_runs": row["n_seeds"]}
        record["selection_accuracy_mean"] = row["accuracy"][0]  # chosen on val/, measured there
        record |= {f"{key}_mean": row["calibration"][key] for key in ("ece", "brier", "nll")}
        table.append(record)
    table += csv_records(tested)
    return [{key: "" if value is None else value for key, value in r.items()} for r in table]


def write_report(
    runs: list[Run],
    rows: list[dict],
    comparisons: list[dict],
    out_dir: Path,
    header: list[str],
    sweep_dirs: list[Path] = (),
    tested: tuple[list[dict], list[dict], list[str]] | None = None,
) -> Path:
    """report.md, report.csv, comparison.png (and search.png for a λ search) in out_dir;
    returns the path of report.md. tested: (rows, comparisons, notes) of the holdout/kfold runs
    (protocol_report), made from runs when not given."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tested_rows, tested_comparisons, notes = tested or summarize_and_compare_tested(runs)
    trials = search_trials(runs)
    reference_trials = [trial for trial in trials if trial["protocol"] not in TESTED]
    held_out = bool(tested_rows) or len(trials) > len(reference_trials)
    lines = header + metrics_lines(rows, reference_trials, held_out)
    lines += comparison_lines(rows, comparisons, held_out)
    lines += protocol_lines(
        tested_rows, tested_comparisons, notes, len(trials) - len(reference_trials)
    )
    weights = weight_statistics_by_regularizer(
        rows + [{**row, "label": f"{row['label']} ({row['protocol']})"} for row in tested_rows]
    )
    lines += weight_lines(weights) + search_lines(runs, list(sweep_dirs), out_dir)
    lines += problem_lines(runs) + ["", "![comparison](comparison.png)", ""]
    plot_comparison(runs, out_dir / "comparison.png")

    def write_csv(tmp):
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(csv_rows(rows, comparisons, tested_rows))

    atomic_write(out_dir / "report.csv", write_csv)
    atomic_write(out_dir / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines)))
    return out_dir / "report.md"


def summarize_and_compare_tested(runs: list[Run]) -> tuple[list[dict], list[dict], list[str]]:
    """The holdout/kfold rows, their comparisons against `none` and notes (protocol_report)."""
    rows, notes = summarize_tested(runs)
    return rows, compare_tested(rows), notes


def summary_table(
    rows: list[dict], comparisons: list[dict], trials: list[dict] = (), tested: list[dict] = ()
) -> str:
    """The few numbers people check first, for the terminal. λ-search trials get a line of
    their own: one run per λ has no seeds to count and no interval. tested: the holdout/kfold
    rows (with their comparisons), listed after the reference rows by test accuracy."""
    by_label = {c["label"]: c for c in comparisons}
    width = max([12] + [len(row["label"]) for row in rows])
    lines = []
    if rows or not tested:
        header = f"{'regularizer':<{width}} {'seeds':>5}  {'accuracy %':<15} {'vs none (pp)':>12}"
        lines.append(header + "  p")
    for row in rows:
        comparison = by_label.get(row["label"])
        diff = percent_points(comparison["diff"]) if comparison else ""
        p_value = comparison["p_text"] if comparison else ""
        accuracy = percent_mean_std(row["accuracy"])
        line = f"{row['label']:<{width}} {row['n_seeds']:>5}  {accuracy:<15} {diff:>12}  {p_value}"
        lines.append(line.rstrip())
    lines += summary_lines(tested, width)
    for name in regularizer_order(trial["regularizer"] for trial in trials):
        chosen = [trial for trial in trials if trial["regularizer"] == name]
        best = chosen[0]  # trials come best first (by the selection accuracy)
        strengths = (best["lambda_l1"], best["lambda_l2"], best["alpha"], best["beta"])
        lines.append(
            f"{name}: λ search, {len(chosen)} trials (one run per λ: trials, not seeds); best "
            f"{trial_summary(best)} at {strength_text(strengths).replace(' ', ', ')}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hymtl-report", description="Compare the runs of hymtl sweeps (report.md/.csv/.png)."
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR")
    parser.add_argument("--out", type=Path, help="where to write (default: the first SWEEP_DIR)")
    args = parser.parse_args(argv)
    sweep_dirs = [d.resolve() for d in args.sweep_dirs]
    try:
        for sweep_dir in sweep_dirs:
            if not sweep_dir.is_dir():
                raise UserError(f"{sweep_dir} does not exist or is not a directory")
        run_dirs = sorted({run_dir for d in sweep_dirs for run_dir in find_run_dirs(d)})
        if not run_dirs:
            raise UserError(
                f"no run dirs (with .hydra/config.yaml, summary.json or metrics.csv) under "
                f"{', '.join(map(str, sweep_dirs))}"
            )
        command = "python -m hymtl.report " + " ".join(shlex.quote(relative(d)) for d in sweep_dirs)
        if args.out is not None:
            command += f" --out {shlex.quote(relative(args.out))}"
        out_dir = args.out.resolve() if args.out is not None else sweep_dirs[0]
        runs = [load_run(run_dir) for run_dir in run_dirs]
        for run in runs:  # the first SWEEP_DIR holding it, to tell reruns of a seed apart
            run.sweep_dir = next(d for d in sweep_dirs if run.path.is_relative_to(d))
        rows = summarize_by_regularizer(runs)
        comparisons = compare_with_none(rows)
        tested = summarize_and_compare_tested(runs)
        header = header_lines(runs, sweep_dirs, command, rows)
        report = write_report(runs, rows, comparisons, out_dir, header, sweep_dirs, tested)
    except (UserError, OSError) as error:
        print(f"hymtl-report: error: {error}", file=sys.stderr)
        return 2
    print(report)
    print(summary_table(rows, comparisons, search_trials(runs), tested[0]))
    return 0


def cli() -> None:
    """Console script `hymtl-report`."""
    sys.exit(main())


if __name__ == "__main__":
    cli()

"""The reference-protocol rows: runs whose epoch was chosen and measured on the same val images.

A row is one setting (model, regularizer, strengths (λ1, λ2, α, β), epochs). Its runs are
repeats that differ in seed, and only distinct seeds are averaged: runs of one setting that
share a seed (the same sweep read twice, or two sweeps run with seed 0) are shown side by side,
one row per sweep dir, never pooled (rows.split_repeated). Runs of a regularizer tried at
several strengths with one seed each are λ-search trials (search.py), never seeds; holdout and
kfold runs make rows of their own (protocols.py)."""

from __future__ import annotations

from hymtl.reporting.rows import calibration_means, label_rows, split_repeated
from hymtl.reporting.runs import Run
from hymtl.reporting.settings import (
    TESTED,
    Setting,
    regularizer_order,
    run_protocol,
    setting,
    trial_runs,
)
from hymtl.reporting.stats import mean_std, t_interval, wilson_interval


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


def summarize_by_regularizer(runs: list[Run]) -> list[dict]:
    """One row per setting over its completed reference-protocol runs, from each run's
    best-epoch metrics, averaged over distinct seeds only. λ-search trials and holdout/kfold
    runs are left out (module docstring)."""
    runs = [run for run in runs if run_protocol(run) not in TESTED]
    trials = {run.path for run in trial_runs(runs)}
    completed = [run for run in runs if run.status == "completed" and run.path not in trials]
    groups: dict[Setting, list[Run]] = {}
    for run in completed:
        groups.setdefault(setting(run), []).append(run)
    strengths: dict[str, set] = {}  # every strength a regularizer ran with, trials included
    for run in runs:
        if run.status == "completed":
            strengths.setdefault(run.regularizer, set()).add(setting(run).strengths)
    rank = {name: i for i, name in enumerate(regularizer_order(run.regularizer for run in runs))}

    def order(key: Setting):
        epochs = key.epochs
        return rank[key.regularizer], str(key.model), epochs is None, epochs or 0, key.strengths

    rows = []
    for key in sorted(groups, key=order):
        group = sorted(groups[key], key=lambda run: str(run.seed))
        for sweep, members in split_repeated(group, lambda run: run.seed):
            row = {"regularizer": key.regularizer, "setting": key, "sweep": sweep}
            rows.append({**row, **seed_statistics(members)})
    label_rows(rows, strengths)
    return rows

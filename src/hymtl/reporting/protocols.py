"""The holdout/kfold rows of hymtl.report: runs trained with evaluation.protocol=holdout or kfold.

Such a run chose its epoch on a select split of the training images (`best_model`,
`best_val_acc`) and then measured the chosen weights once on test images the choice never saw
(summary.json `test`, test_predictions.csv). Its `evaluation` block names the test set:
`test_sha256` (the test images and labels), `pool_sha256` (every image the run used), `folds`,
`fold`, `split_seed`, and the split sizes n_train, n_select, n_test.

A row is one setting (model, regularizer, strengths, epochs) × protocol × select_fraction ×
test set: for kfold the folds count and the pool (`pool_sha256`), for holdout the test images
(`test_sha256`). Runs tested on different images are never pooled into one row, nor compared
with each other. Within a row the samples are (split seed, fold, seed) under kfold and
(split seed, seed) under holdout; a key that repeats is a rerun, not a sample, and the row is
then shown per sweep dir (rows.split_repeated), as the reference rows are with repeated seeds.
Within a kfold row one (split seed, fold) must always mean the same test images
(`test_sha256`); runs that disagree are shown apart. comparisons.compare_tested tests the rows
against `none`.
"""

from __future__ import annotations

import statistics
from typing import NamedTuple

from hymtl.reporting.rows import by_sweep_dir, calibration_means, label_rows, split_repeated
from hymtl.reporting.settings import (
    KNOWN_ORDER,
    TESTED,
    Setting,
    held_out_accuracy,
    run_protocol,
    sample_key,
    selection_accuracy,
    setting,
    trial_runs,
)
from hymtl.reporting.stats import corrected_interval, mean_std, t_interval, wilson_interval


class HeldOutSet(NamedTuple):
    """Which images a run's test score is on: under kfold the pool and its partition into folds
    (folds, pool_sha256), so the folds of one row tile the same images; under holdout the test
    images (test_sha256)."""

    protocol: str
    folds: int | None = None
    pool_sha256: str | None = None
    test_sha256: str | None = None

    def text(self) -> str:
        if self.protocol == "kfold":
            return f"{self.folds}-fold, pool {short_hash(self.pool_sha256)}"
        return f"test {short_hash(self.test_sha256)}"


class RowKey(NamedTuple):
    """What the runs of one holdout/kfold row share."""

    setting: Setting
    protocol: str
    test_set: HeldOutSet
    select_fraction: float | None


def evaluation(run) -> dict:
    block = run.summary.get("evaluation")
    return block if isinstance(block, dict) else {}


def held_out_set(run) -> HeldOutSet:
    block = evaluation(run)
    if run_protocol(run) == "kfold":
        return HeldOutSet("kfold", block.get("folds"), block.get("pool_sha256"))
    return HeldOutSet("holdout", test_sha256=block.get("test_sha256"))


def short_hash(value) -> str:
    return str(value)[:8] if value else "unknown"


def usable(run) -> bool:
    """A completed holdout/kfold run with a readable test score and split sizes."""
    block = evaluation(run)
    return held_out_accuracy(run) is not None and all(
        isinstance(block.get(key), int) for key in ("n_train", "n_select", "n_test")
    )


def runs_with_test_sets(runs: list) -> tuple[list, list]:
    """(the completed holdout/kfold runs that make rows, those left out for lacking a `test` or
    `evaluation` block); λ-search trials are in neither (search.py lists them)."""
    trials = {run.path for run in trial_runs(runs)}
    candidates = [
        run
        for run in runs
        if run.status == "completed" and run_protocol(run) in TESTED and run.path not in trials
    ]
    return [r for r in candidates if usable(r)], [r for r in candidates if not usable(r)]


def fold_key(run) -> tuple:
    block = evaluation(run)
    return block.get("split_seed"), block.get("fold")


def split_test_sets(group: list, notes: list[str]) -> list[tuple[str | None, list]]:
    """Parts of group in which each (split seed, fold) means one set of test images
    (test_sha256). One part when they already agree; else per sweep dir, and within a sweep dir
    that disagrees with itself, greedily into parts that agree. A note says what was split."""

    def agree(runs: list) -> bool:
        seen: dict[tuple, set] = {}
        for run in runs:
            seen.setdefault(fold_key(run), set()).add(evaluation(run).get("test_sha256"))
        return all(len(hashes) == 1 for hashes in seen.values())

    if agree(group):
        return [(None, group)]
    run = group[0]
    notes.append(
        f"different test sets: `{run.regularizer}` {run_protocol(run)} runs name different test "
        "images (test_sha256) for the same split seed and fold (another data folder or split "
        "code): shown per sweep dir, never pooled"
    )
    parts = []
    for label, _, members in by_sweep_dir(group):
        chunks: list[tuple[dict, list]] = []  # (fold key → test_sha256, runs) that agree
        for run in members:
            key, sha = fold_key(run), evaluation(run).get("test_sha256")
            for hashes, chunk in chunks:
                if hashes.setdefault(key, sha) == sha:
                    chunk.append(run)
                    break
            else:
                chunks.append(({key: sha}, [run]))
        for index, (_, chunk) in enumerate(chunks, 1):
            parts.append((label if len(chunks) == 1 else f"{label}, test set {index}", chunk))
    return parts


def coverage(runs: list, protocol: str) -> str:
    """Which samples a row holds: folds per split seed (kfold), seeds per split seed (holdout)."""
    per_split: dict = {}
    for run in runs:
        split_seed, fold = fold_key(run)
        per_split.setdefault(split_seed, set()).add(fold if protocol == "kfold" else run.seed)
    seeds = len({run.seed for run in runs})
    seed_text = f" × {seeds} seeds" if seeds > 1 else ""
    if protocol == "kfold":
        folds = evaluation(runs[0]).get("folds")
        counts = {len(found) for found in per_split.values()}
        splits = "split seed" if len(per_split) == 1 else "split seeds"
        if len(counts) == 1:
            return f"{counts.pop()}/{folds} folds × {len(per_split)} {splits}{seed_text}"
        listed = ", ".join(
            f"{len(found)}/{folds} folds of split seed {split}"
            for split, found in sorted(per_split.items(), key=lambda item: str(item[0]))
        )
        return listed + seed_text
    splits = "split seed" if len(per_split) == 1 else "split seeds"
    return f"{seeds} seed{'s' if seeds > 1 else ''} × {len(per_split)} {splits}"


def split_sizes(runs: list) -> tuple[float, float]:
    """Mean (n_train + n_select, n_test) over runs: the images that trained or selected the
    model, and the images it was tested on (the ratio the corrected test needs)."""
    blocks = [evaluation(run) for run in runs]
    n_train = statistics.fmean(b["n_train"] + b["n_select"] for b in blocks)
    return n_train, statistics.fmean(b["n_test"] for b in blocks)


def row_statistics(runs: list, protocol: str) -> dict:
    """Test metrics of one row's runs (mean ± std over runs), their interval, the selection
    accuracy that chose each epoch, and calibration."""
    tests = [run.summary["test"] for run in runs]
    accuracies = [test["accuracy"] for test in tests]
    n_train, n_test = split_sizes(runs)
    row = {"runs": runs, "n_runs": len(runs), "coverage": coverage(runs, protocol)}
    row["n_seeds"] = len({run.seed for run in runs})
    row["n_train"], row["n_test"] = n_train, n_test
    row["n_test_text"] = "/".join(sorted({str(evaluation(run)["n_test"]) for run in runs}))
    row["accuracy"] = mean_std(accuracies)
    for metric in ("precision", "recall", "f1"):
        values = [(test.get("macro") or {}).get(metric) for test in tests]
        row[metric] = mean_std(values) if None not in values else None
    if protocol == "kfold":
        row["accuracy_ci"] = corrected_interval(accuracies, round(n_train), round(n_test))
        row["ci_method"] = "corrected"
    elif len(runs) > 1:
        row["accuracy_ci"], row["ci_method"] = t_interval(accuracies, bounds=(0.0, 1.0)), "t"
    else:
        n = evaluation(runs[0])["n_test"]
        row["accuracy_ci"] = wilson_interval(round(accuracies[0] * n), n)
        row["ci_method"] = "wilson"
    row["selection"] = mean_std([selection_accuracy(run) for run in runs])
    row["calibration"] = calibration_means(runs)
    return row


def label_parts(rows: list[dict]):
    """What else tells holdout/kfold rows apart (rows.label_rows' extra): the select fraction,
    and the test set where a protocol has several."""
    fractions = {row["select_fraction"] for row in rows}
    test_sets: dict[str, set] = {}
    for row in rows:
        test_sets.setdefault(row["protocol"], set()).add(row["test_set"])

    def parts(row: dict) -> list[str]:
        found = [f"select {row['select_fraction']}"] if len(fractions) > 1 else []
        if len(test_sets[row["protocol"]]) > 1:
            found.append(row["test_set"].text())
        return found

    return parts


def identity_notes(rows: list[dict]) -> list[str]:
    """A note per protocol whose rows were tested on more than one set of images."""
    notes = []
    for protocol in TESTED:
        identities = sorted(
            {row["test_set"] for row in rows if row["protocol"] == protocol}, key=str
        )
        if len(identities) < 2:
            continue
        if protocol == "kfold":
            reasons = []
            if len({identity.pool_sha256 for identity in identities}) > 1:
                reasons.append("different data (pool_sha256)")
            if len({identity.folds for identity in identities}) > 1:
                reasons.append("different folds counts")
            why = " and ".join(reasons)
        else:
            why = "different test images (test_sha256)"
        listed = ", ".join(f"`{identity.text()}`" for identity in identities)
        notes.append(
            f"different test sets: the {protocol} runs were tested on {len(identities)} test "
            f"sets ({why}: {listed}); each row and each comparison uses one, never a mix"
        )
    return notes


def grouped(runs: list) -> dict[RowKey, list]:
    """The runs by RowKey, in table order: protocol, regularizer (KNOWN_ORDER), model, epochs,
    strengths, test set, select fraction."""
    groups: dict[RowKey, list] = {}
    for run in runs:
        fraction = evaluation(run).get("select_fraction")
        key = RowKey(setting(run), run_protocol(run), held_out_set(run), fraction)
        groups.setdefault(key, []).append(run)
    order = {name: index for index, name in enumerate(KNOWN_ORDER)}

    def sort_key(key: RowKey):
        name, epochs = key.setting.regularizer, key.setting.epochs
        rank = order.get(name, len(order))
        model, strengths = str(key.setting.model), key.setting.strengths
        identity, fraction = str(key.test_set), str(key.select_fraction)
        return key.protocol, rank, name, model, epochs or 0, strengths, identity, fraction

    return {key: groups[key] for key in sorted(groups, key=sort_key)}


def summarize_tested(runs: list) -> tuple[list[dict], list[str]]:
    """The holdout/kfold rows over runs (module docstring), and notes on what was kept apart."""
    kept, left_out = runs_with_test_sets(runs)
    notes = []
    if left_out:
        notes.append(
            f"{len(left_out)} completed holdout/kfold run(s) without a `test` or `evaluation` "
            "block in summary.json are left out: "
            + ", ".join(f"`{run.path.name}`" for run in left_out)
        )
    rows = []
    for key, group in grouped(kept).items():
        group = sorted(group, key=lambda run: str(sample_key(run)))
        for test_label, part in split_test_sets(group, notes):
            for sweep, members in split_repeated(part, sample_key):
                row = {"regularizer": key.setting.regularizer, "setting": key.setting}
                row |= {"protocol": key.protocol, "test_set": key.test_set}
                row |= {"select_fraction": key.select_fraction}
                row["sweep"], row["rerun"] = sweep or test_label, sweep is not None
                rows.append(row | row_statistics(members, key.protocol))
    strengths: dict[str, set] = {}
    for row in rows:
        strengths.setdefault(row["regularizer"], set()).add(row["setting"].strengths)
    label_rows(rows, strengths, label_parts(rows))
    for row in rows:
        if row["rerun"]:
            notes.append(
                f"`{row['label']}`: its runs repeat a (split seed, fold, seed) of another row of "
                "the same setting (a rerun, not another sample): shown side by side, never "
                "averaged"
            )
    return rows, identity_notes(rows) + list(dict.fromkeys(notes))

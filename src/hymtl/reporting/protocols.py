"""The held-out part of hymtl.report: runs trained with evaluation.protocol=holdout or kfold.

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
then shown per sweep dir (split_repeated), as report.py does with repeated seeds. Within a kfold
row one (split seed, fold) must always mean the same test images (`test_sha256`); runs that
disagree are shown apart.

Against `none` (same model, epochs, protocol, select_fraction and test set): kfold → runs paired
by (split seed, fold, seed), corrected resampled t-test (stats.corrected_resampled_t_test);
holdout → paired t-test over ≥2 shared seeds, or exact McNemar on test_predictions.csv for one.
"""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from pathlib import Path

from hymtl.reporting.search import (
    KNOWN_ORDER,
    held_out_accuracy,
    run_protocol,
    sample_key,
    setting,
    strength_text,
    trial_runs,
)
from hymtl.reporting.stats import (
    corrected_interval,
    corrected_resampled_t_test,
    mcnemar,
    mean_std,
    p_text,
    paired_t_test,
    percent,
    percent_interval,
    percent_mean_std,
    t_interval,
    wilson_interval,
)

TESTED = ("holdout", "kfold")  # protocols with a held-out test set
CALIBRATION_KEYS = ("ece", "brier", "nll")


# Helpers report.py shares -------------------------------------------------------------------


def by_sweep_dir(group: list) -> list[tuple[str, Path, list]]:
    """The runs of group per sweep dir (the SWEEP_DIR argument each was found under), as
    (label, sweep dir, runs); the label is the dir's name, or its whole path where two sweep
    dirs share a name."""
    by_sweep: dict[Path, list] = {}
    for run in group:
        by_sweep.setdefault(run.sweep_dir or run.path.parent, []).append(run)
    names = Counter(sweep.name for sweep in by_sweep)
    return [
        (sweep.name if names[sweep.name] == 1 else str(sweep), sweep, members)
        for sweep, members in by_sweep.items()
    ]


def split_repeated(group: list, key) -> list[tuple[str | None, list]]:
    """The runs of one row as (sweep label, runs) parts whose key(run) values are distinct: one
    part when no key repeats; else one per sweep dir (a repeated key is a rerun, not a new
    sample), and within a sweep dir that repeats a key itself, one per run."""
    if len({key(run) for run in group}) == len(group):
        return [(None, group)]
    parts = []
    for label, sweep, members in by_sweep_dir(group):
        if len({key(run) for run in members}) == len(members):
            parts.append((label, members))
        else:
            parts += [(f"{label}/{run.path.relative_to(sweep)}", [run]) for run in members]
    return sorted(parts, key=lambda part: part[0])


def choose_reference(row: dict, candidates: list[dict]) -> dict | None:
    """The one `none` row among candidates (rows already known to fit row's model, epochs, ...)
    to test row against: the only one, else the one of row's sweep label, else the one read
    from the same sweep dirs. None when no single row fits."""

    def source_dirs(some_row: dict) -> set[Path]:
        return {run.sweep_dir or run.path.parent for run in some_row["runs"]}

    for fits in (
        lambda ref: True,  # the only one
        lambda ref: ref["sweep"] == row["sweep"],
        lambda ref: source_dirs(ref) == source_dirs(row),
    ):
        chosen = [ref for ref in candidates if fits(ref)]
        if len(chosen) == 1:
            return chosen[0]
    return None


def calibration_means(runs: list) -> dict:
    """Mean ECE, Brier and NLL over the runs whose summary.json has `calibration` (the selected
    weights on the evaluation set: test under holdout/kfold, val under reference); None for a
    metric no run has. n_runs: how many runs had it; bins: the ECE bin counts seen."""
    blocks = [b for b in (run.summary.get("calibration") for run in runs) if isinstance(b, dict)]
    means = {}
    for key in CALIBRATION_KEYS:
        values = [b[key] for b in blocks if isinstance(b.get(key), (int, float))]
        means[key] = statistics.fmean(values) if values else None
    bins = sorted({b["bins"] for b in blocks if isinstance(b.get("bins"), int)})
    return {**means, "n_runs": len(blocks), "bins": bins}


def number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def read_predictions(path: Path) -> tuple[list[str], list[int]] | None:
    """(image paths, 0/1 correct) of a *_predictions.csv; None when missing or unreadable."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [row["path"] for row in rows], [int(row["correct"]) for row in rows]
    except (OSError, KeyError, ValueError):
        return None


def verdict(p: float | None) -> str:
    if p is None:
        return "not tested"
    return "significant (p<0.05)" if p < 0.05 else "not significant"


# Rows ---------------------------------------------------------------------------------------


def evaluation(run) -> dict:
    block = run.summary.get("evaluation")
    return block if isinstance(block, dict) else {}


def held_out_set(run) -> tuple:
    """Which images a run's test score is on: ("kfold", folds, pool_sha256) — the pool and its
    partition into folds, so the folds of one row tile the same images — or ("holdout",
    test_sha256)."""
    block = evaluation(run)
    if run_protocol(run) == "kfold":
        return "kfold", block.get("folds"), block.get("pool_sha256")
    return "holdout", block.get("test_sha256")


def short_hash(value) -> str:
    return str(value)[:8] if value else "unknown"


def identity_text(identity: tuple) -> str:
    if identity[0] == "kfold":
        return f"{identity[1]}-fold, pool {short_hash(identity[2])}"
    return f"test {short_hash(identity[1])}"


def usable(run) -> bool:
    """A completed holdout/kfold run with a readable test score and split sizes."""
    block = evaluation(run)
    return held_out_accuracy(run) is not None and all(
        isinstance(block.get(key), int) for key in ("n_train", "n_select", "n_test")
    )


def runs_with_test_sets(runs: list) -> tuple[list, list]:
    """(the completed holdout/kfold runs that make rows, those left out for lacking a `test` or
    `evaluation` block); λ-search trials are in neither (search_report lists them)."""
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
        row["accuracy_ci"], row["ci_method"] = t_interval(accuracies), "t"
    else:
        n = evaluation(runs[0])["n_test"]
        row["accuracy_ci"] = wilson_interval(round(accuracies[0] * n), n)
        row["ci_method"] = "wilson"
    row["selection"] = mean_std([run.summary["best_model"]["accuracy"] for run in runs])
    row["calibration"] = calibration_means(runs)
    return row


def label_rows(rows: list[dict]) -> None:
    """Name each row by its regularizer plus what tells it apart from the others: strengths
    (when its regularizer ran at several), model, epochs, select fraction, test set (when a
    protocol has several), and the sweep dir."""
    strengths: dict[str, set] = {}
    for row in rows:
        strengths.setdefault(row["regularizer"], set()).add(row["setting"][2])
    models = {row["setting"][0] for row in rows}
    epochs = {row["setting"][3] for row in rows}
    fractions = {row["select_fraction"] for row in rows}
    test_sets: dict[str, set] = {}
    for row in rows:
        test_sets.setdefault(row["protocol"], set()).add(row["test_set"])
    for row in rows:
        model, name, values, n_epochs = row["setting"]
        parts = [name]
        if len(strengths[name]) > 1:
            parts.append(strength_text(values))
        if len(models) > 1:
            parts.append(str(model))
        if len(epochs) > 1:
            parts.append(f"{n_epochs} epochs")
        if len(fractions) > 1:
            parts.append(f"select {row['select_fraction']}")
        if len(test_sets[row["protocol"]]) > 1:
            parts.append(identity_text(row["test_set"]))
        row["label"] = ", ".join(parts) + (f" ({row['sweep']})" if row["sweep"] else "")


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
            if len({identity[2] for identity in identities}) > 1:
                reasons.append("different data (pool_sha256)")
            if len({identity[1] for identity in identities}) > 1:
                reasons.append("different folds counts")
            why = " and ".join(reasons)
        else:
            why = "different test images (test_sha256)"
        listed = ", ".join(f"`{identity_text(identity)}`" for identity in identities)
        notes.append(
            f"different test sets: the {protocol} runs were tested on {len(identities)} test "
            f"sets ({why}: {listed}); each row and each comparison uses one, never a mix"
        )
    return notes


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
    groups: dict[tuple, list] = {}
    for run in kept:
        fraction = evaluation(run).get("select_fraction")
        key = (setting(run), run_protocol(run), held_out_set(run), fraction)
        groups.setdefault(key, []).append(run)
    order = {name: index for index, name in enumerate(KNOWN_ORDER)}

    def sort_key(key: tuple):
        (model, name, values, epochs), protocol, identity, fraction = key
        rank = order.get(name, len(order))
        return protocol, rank, name, str(model), epochs or 0, values, str(identity), str(fraction)

    rows = []
    for key in sorted(groups, key=sort_key):
        run_setting, protocol, identity, fraction = key
        group = sorted(groups[key], key=lambda run: str(sample_key(run)))
        for test_label, part in split_test_sets(group, notes):
            for sweep, members in split_repeated(part, sample_key):
                row = {"regularizer": run_setting[1], "setting": run_setting}
                row |= {"protocol": protocol, "test_set": identity, "select_fraction": fraction}
                row["sweep"], row["rerun"] = sweep or test_label, sweep is not None
                rows.append(row | row_statistics(members, protocol))
    label_rows(rows)
    for row in rows:
        if row["rerun"]:
            notes.append(
                f"`{row['label']}`: its runs repeat a (split seed, fold, seed) of another row of "
                "the same setting (a rerun, not another sample): shown side by side, never "
                "averaged"
            )
    return rows, identity_notes(rows) + list(dict.fromkeys(notes))


# Comparisons --------------------------------------------------------------------------------


def kfold_comparison(reference: dict, other: dict) -> dict:
    """Runs paired by (split seed, fold, seed); corrected resampled t-test on test accuracy."""
    ref = {sample_key(run): run for run in reference["runs"]}
    oth = {sample_key(run): run for run in other["runs"]}
    common = sorted(set(ref) & set(oth), key=str)
    if not common:
        diff = other["accuracy"][0] - reference["accuracy"][0]
        test = "no test: no (split seed, fold, seed) in common"
        return {"diff": diff, "ci": None, "p": None, "test": test, "p_text": "–"}
    n_train, n_test = split_sizes([ref[k] for k in common] + [oth[k] for k in common])
    result = corrected_resampled_t_test(
        [held_out_accuracy(ref[k]) for k in common],
        [held_out_accuracy(oth[k]) for k in common],
        round(n_train),
        round(n_test),
    )
    if result["n"] < 3:
        return result | {"test": f"no test possible ({result['n']} paired values)", "p_text": "–"}
    test = (
        f"corrected resampled t-test over {result['n']} paired folds "
        f"(n_test/n_train = {round(n_test)}/{round(n_train)})"
    )
    return result | {"test": test, "p_text": p_text(result["p"])}


def holdout_comparison(reference: dict, other: dict) -> dict:
    """Paired by (split seed, seed): a paired t-test over ≥2 shared seeds, else exact McNemar
    on the images of test_predictions.csv (the same image list in both runs)."""
    ref = {sample_key(run): run for run in reference["runs"]}
    oth = {sample_key(run): run for run in other["runs"]}
    common = sorted(set(ref) & set(oth), key=str)
    if len(common) >= 2:
        result = paired_t_test(
            [held_out_accuracy(ref[k]) for k in common], [held_out_accuracy(oth[k]) for k in common]
        )
        test = f"paired t-test over {result['n']} seeds"
        return result | {"test": test, "p_text": p_text(result["p"])}
    if common or (len(ref) == 1 and len(oth) == 1):
        pair = (ref[common[0]], oth[common[0]]) if common else (*ref.values(), *oth.values())
        ref_pred, oth_pred = (read_predictions(run.path / "test_predictions.csv") for run in pair)
        if ref_pred and oth_pred and ref_pred[0] == oth_pred[0]:
            result = mcnemar(ref_pred[1], oth_pred[1])
            test = f"exact McNemar (b={result['b']}, c={result['c']}, {result['n']} test images)"
            return result | {"test": test}
        diff = held_out_accuracy(pair[1]) - held_out_accuracy(pair[0])
        return {
            "diff": diff,
            "ci": None,
            "p": None,
            "test": "no test: no matching test_predictions",
        }
    diff = other["accuracy"][0] - reference["accuracy"][0]
    return {"diff": diff, "ci": None, "p": None, "test": "no test: no seeds in common"}


def compare_tested(rows: list[dict]) -> list[dict]:
    """Each non-`none` row against the `none` row of the same model, epochs, protocol, select
    fraction and test set (choose_reference among several); the result is also row["comparison"]."""
    comparisons = []
    for row in rows:
        if row["regularizer"] == "none":
            continue
        model, _, _, epochs = row["setting"]
        candidates = [
            ref
            for ref in rows
            if ref["regularizer"] == "none"
            and (ref["setting"][0], ref["setting"][3]) == (model, epochs)
            and all(ref[key] == row[key] for key in ("protocol", "test_set", "select_fraction"))
        ]
        none_row = choose_reference(row, candidates)
        if none_row is None:
            test = "no test: no single `none` row of the same model, epochs and test set"
            result = {"diff": None, "ci": None, "p": None, "test": test}
        elif row["protocol"] == "kfold":
            result = kfold_comparison(none_row, row)
        else:
            result = holdout_comparison(none_row, row)
        result.setdefault("p_text", "–" if result["p"] is None else p_text(result["p"]))
        result |= {"label": row["label"], "regularizer": row["regularizer"], "row": row}
        result |= {"none_row": none_row, "verdict": verdict(result["p"])}
        row["comparison"] = result
        comparisons.append(result)
    return comparisons


# Output -------------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def percent_points(diff: float | None) -> str:
    return "–" if diff is None else f"{100 * diff:+.2f}"


def optional_mean_std(value) -> str:
    return "–" if value is None else percent_mean_std(value)


def held_out_lines(rows: list[dict], notes: list[str], trials: int = 0) -> list[str]:
    """The test-metrics table, calibration table and notes (markdown); [] without rows."""
    if not rows:
        return []
    lines = ["", "## Test metrics (held-out, selection never saw these images)", ""]
    lines += markdown_table(
        "Setting | Protocol | Test set | Runs | Covers | Test accuracy | 95% CI (test accuracy) "
        "| Precision | Recall | F1 | n test | Selection acc (chose the epoch)".split(" | "),
        [
            [row["label"], row["protocol"], identity_text(row["test_set"]), row["n_runs"]]
            + [row["coverage"], percent_mean_std(row["accuracy"])]
            + [percent_interval(row["accuracy_ci"])]
            + [optional_mean_std(row[metric]) for metric in ("precision", "recall", "f1")]
            + [row["n_test_text"], percent_mean_std(row["selection"])]
            for row in rows
        ],
    )
    methods = {row["ci_method"] for row in rows}
    lines += [
        "",
        "Percent, mean ± std over a row's runs (ddof=1). Each run chose its epoch on a select "
        "split of its training images and was then measured once, with those weights, on test "
        "images neither training nor the choice saw (summary.json `test`); precision, recall "
        "and F1 are macro averages over classes. `Selection acc` is the best val accuracy on "
        "the select split, the number that chose the epoch: optimistic, shown for contrast, "
        "not a result. A row is one setting × protocol × test set (kfold: folds count and image "
        "pool; holdout: the test images); runs of different test sets are never pooled.",
    ]
    if "corrected" in methods:
        lines.append(
            "95% CI (kfold): mean ± t(0.975, J-1)·sqrt((1/J + n_test/n_train)·s²) over the J "
            "runs (folds × split seeds × seeds), clipped to [0, 100] %: the Nadeau & Bengio "
            "correction for folds that share training images (– for one run)."
        )
    if "t" in methods:
        lines.append("95% CI (holdout, ≥2 seeds): t-interval over seeds, mean ± t·s/√n.")
    if "wilson" in methods:
        lines.append(
            "95% CI (holdout, one seed): Wilson score interval for correct/n test "
            "(spread over images only, not over seeds)."
        )
    if trials:
        lines.append(
            f"Not in this table: {trials} holdout/kfold λ-search trials; see the λ search section."
        )
    if notes:
        lines += [""] + [f"- **note:** {note}" for note in notes]
    return lines + calibration_lines(rows)


def calibration_lines(rows: list[dict]) -> list[str]:
    if not any(row["calibration"]["n_runs"] for row in rows):
        return []
    bins = sorted({b for row in rows for b in row["calibration"]["bins"]})
    ece = f"ECE ({'/'.join(map(str, bins))} bins)" if bins else "ECE"
    lines = ["", "### Calibration of the selected weights on the test images", ""]
    lines += markdown_table(
        ["Setting", "Protocol", ece, "Brier", "NLL", "runs with calibration"],
        [
            [row["label"], row["protocol"]]
            + [number(row["calibration"][key]) for key in CALIBRATION_KEYS]
            + [f"{row['calibration']['n_runs']}/{row['n_runs']}"]
            for row in rows
        ],
    )
    return lines + [
        "",
        "Means over runs of summary.json `calibration` (set = test): ECE = Σ_b (n_b/n)·|acc_b − "
        "conf_b| over equal-width bins of top-1 confidence; Brier = mean Σ_k (p_k − y_k)² "
        "(0 to 2); NLL = mean −ln p(true class). Lower is better for all three.",
    ]


def comparison_lines(rows: list[dict], comparisons: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Each regularizer against `none` on the test images", ""]
    if not any(row["regularizer"] == "none" for row in rows):
        return lines + ["No completed holdout/kfold `none` run: nothing to compare against."]
    if not comparisons:
        return lines + ["Only `none` has holdout/kfold rows so far."]
    lines += markdown_table(
        "Setting | Protocol | Test accuracy | `none` test accuracy | Δ (pp) | 95% CI (pp) | p "
        "| Test | Verdict".split(" | "),
        [
            [c["label"], c["row"]["protocol"], percent_mean_std(c["row"]["accuracy"])]
            + [percent_mean_std(c["none_row"]["accuracy"]) if c["none_row"] else "–"]
            + [percent_points(c["diff"]), percent_interval(c["ci"]), c["p_text"], c["test"]]
            + [c["verdict"]]
            for c in comparisons
        ],
    )
    return lines + [
        "",
        "Δ = regularizer − none in test accuracy, against the `none` row of the same model, "
        "epochs, protocol and test set. kfold: runs paired by (split seed, fold, seed); "
        "corrected resampled t-test (Nadeau & Bengio 2003, as in Bouckaert & Frank 2004): with "
        "d_j the J paired differences, t = mean(d) / sqrt((1/J + n_test/n_train)·s²(d)), "
        "J − 1 degrees of freedom, n_train = train + select images, n_test = test images. The "
        "folds' training sets overlap, so the d_j are correlated and a plain paired t-test "
        "(variance s²/J) would be far too confident; fewer than 3 pairs: no test. holdout: "
        "paired t-test over seeds (≥2 shared seeds), else exact McNemar on the test images of "
        "test_predictions.csv. No correction for multiple comparisons (several regularizers "
        "tested against `none`): read a p near 0.05 with that in mind.",
    ]


def protocol_lines(rows: list[dict], comparisons: list[dict], notes: list[str], trials=0):
    """Every holdout/kfold section of report.md; [] when no run has a test set."""
    return held_out_lines(rows, notes, trials) + comparison_lines(rows, comparisons)


def csv_records(rows: list[dict]) -> list[dict]:
    """report.csv rows for the holdout/kfold rows: accuracy_*, precision_* ... are TEST metrics
    (the protocol column says which), n_val the test images per run, n_seeds distinct seeds."""
    table = []
    for row in rows:
        comparison = row.get("comparison") or {}
        record = {"regularizer": row["regularizer"], "n_seeds": row["n_seeds"]}
        record["n_val"] = row["n_test_text"]
        for metric in ("precision", "recall", "f1", "accuracy"):
            record[f"{metric}_mean"], record[f"{metric}_std"] = row[metric] or (None, None)
        record["accuracy_ci_low"], record["accuracy_ci_high"] = row["accuracy_ci"] or (None, None)
        record["diff_vs_none"] = comparison.get("diff")
        record["diff_ci_low"], record["diff_ci_high"] = comparison.get("ci") or (None, None)
        record["p_value"], record["test"] = comparison.get("p"), comparison.get("test")
        model, _, (lambda_l1, lambda_l2, alpha, beta), epochs = row["setting"]
        record |= {"model": model, "lambda_l1": lambda_l1, "lambda_l2": lambda_l2}
        record |= {"epochs": epochs, "sweep_dir": row["sweep"], "protocol": row["protocol"]}
        record |= {"test_set": identity_text(row["test_set"]), "n_runs": row["n_runs"]}
        record["selection_accuracy_mean"] = row["selection"][0]
        record |= {f"{key}_mean": row["calibration"][key] for key in CALIBRATION_KEYS}
        record |= {"alpha": alpha, "beta": beta}
        table.append(record)
    return table


def summary_lines(rows: list[dict], width: int) -> list[str]:
    """The terminal lines of the holdout/kfold rows: test accuracy and the p against `none`."""
    if not rows:
        return []
    labels = [f"{row['label']} [{row['protocol']}]" for row in rows]
    width = max([width] + [len(label) for label in labels])
    lines = [f"{'held-out test':<{width}} {'runs':>5}  {'test acc %':<15} {'vs none (pp)':>12}  p"]
    for label, row in zip(labels, rows):
        comparison = row.get("comparison")
        diff = percent_points(comparison["diff"]) if comparison else ""
        p_value = comparison["p_text"] if comparison else ""
        accuracy = percent_mean_std(row["accuracy"])
        line = f"{label:<{width}} {row['n_runs']:>5}  {accuracy:<15} {diff:>12}  {p_value}"
        lines.append(line.rstrip())
    return lines


def trial_summary(best: dict) -> str:
    """The best trial's scores for the terminal line of a λ search (report.summary_table)."""
    text = f"{percent(best['accuracy'])}%"
    if best["protocol"] != "reference":
        test = best["test_accuracy"]
        text += f" on the selection split (test {'–' if test is None else percent(test)}%)"
    return text

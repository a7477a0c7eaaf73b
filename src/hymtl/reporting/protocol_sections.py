"""report.md's holdout/kfold sections: the test-metrics table, the calibration of the selected
weights on the test images, and each regularizer against `none` on the test images."""

from __future__ import annotations

from hymtl.reporting.rows import CALIBRATION_KEYS
from hymtl.reporting.stats import MIN_PAIRED_SEEDS, percent_interval, percent_mean_std
from hymtl.reporting.tables import markdown_table, number, optional_mean_std, percent_points


def held_out_lines(rows: list[dict], notes: list[str], trials: int = 0) -> list[str]:
    """The test-metrics table, calibration table and notes (markdown); [] without rows."""
    if not rows:
        return []
    lines = ["", "## Test metrics (held-out, selection never saw these images)", ""]
    lines += markdown_table(
        "Setting | Protocol | Test set | Runs | Covers | Test accuracy | 95% CI (test accuracy) "
        "| Precision | Recall | F1 | n test | Selection acc (chose the epoch)".split(" | "),
        [
            [row["label"], row["protocol"], row["test_set"].text(), row["n_runs"]]
            + [row["coverage"], percent_mean_std(row["accuracy"])]
            + [percent_interval(row["accuracy_ci"])]
            + [optional_mean_std(row[metric]) for metric in ("precision", "recall", "f1")]
            + [row["n_test_text"], percent_mean_std(row["selection"])]
            for row in rows
        ],
    )
    lines += held_out_notes({row["ci_method"] for row in rows}, trials)
    if notes:
        lines += [""] + [f"- **note:** {note}" for note in notes]
    return lines + calibration_lines(rows)


def held_out_notes(methods: set[str], trials: int) -> list[str]:
    """What the test-metrics table's numbers are, and how its intervals (methods) are made."""
    lines = [
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
    return lines


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
        f"(variance s²/J) would be far too confident; fewer than {MIN_PAIRED_SEEDS} pairs: no "
        f"test. holdout: runs paired by (split seed, seed); paired t-test when at least "
        f"{MIN_PAIRED_SEEDS} are shared, no test when fewer (a t-test on 1 degree of freedom "
        "is no verdict; the difference and its interval are still shown), and for a single "
        "shared seed exact McNemar on the test images of test_predictions.csv. No correction "
        "for multiple comparisons (several regularizers "
        "tested against `none`): read a p near 0.05 with that in mind.",
    ]


def protocol_lines(rows: list[dict], comparisons: list[dict], notes: list[str], trials=0):
    """Every holdout/kfold section of report.md; [] when no run has a test set."""
    return held_out_lines(rows, notes, trials) + comparison_lines(rows, comparisons)

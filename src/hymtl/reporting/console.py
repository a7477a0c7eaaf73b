"""What `hymtl report` prints after writing report.md: the few numbers people check first."""

from __future__ import annotations

from hymtl.reporting.settings import regularizer_order, strength_text
from hymtl.reporting.stats import percent, percent_mean_std
from hymtl.reporting.tables import percent_points


def summary_table(
    rows: list[dict], comparisons: list[dict], trials: list[dict] = (), tested: list[dict] = ()
) -> str:
    """The few numbers people check first, for the terminal. λ-search trials get a line of
    their own: one run per λ has no seeds to count and no interval. tested: the holdout/kfold
    rows (with their comparisons), listed after the reference rows by test accuracy."""
    by_label = {c["label"]: c for c in comparisons}
    width = max([12] + [len(row["label"]) for row in rows])
    lines = []
    if not (rows or tested or trials):
        return "no completed runs yet"
    if rows:
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
        lines.append(
            f"{name}: λ search, {len(chosen)} trials (one run per λ: trials, not seeds); best "
            f"{trial_summary(best)} at {strength_text(best['strengths']).replace(' ', ', ')}"
        )
    return "\n".join(lines)


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
    """The best trial's scores for the terminal line of a λ search (summary_table)."""
    text = f"{percent(best['accuracy'])}%"
    if best["protocol"] != "reference":
        test = best["test_accuracy"]
        text += f" on the selection split (test {'–' if test is None else percent(test)}%)"
    return text

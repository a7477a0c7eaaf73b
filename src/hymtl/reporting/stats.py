"""Small statistics for comparing runs: intervals over seeds or images, the paired t-test over
seeds, McNemar's test over images, the corrected resampled t-test over cross-validation folds,
and how hymtl prints them (percent points).

hymtl.report and scripts/paired_seeds.py both use these, so their numbers agree."""

from __future__ import annotations

import math
import statistics

from scipy import stats

Z_95 = 1.959964  # standard normal 0.975 quantile


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def t_interval(
    values: list[float], confidence: float = 0.95, bounds: tuple[float, float] | None = None
) -> tuple[float, float]:
    """mean ± t_{(1+confidence)/2, n-1}·s/√n over n ≥ 2 values, clipped to `bounds` when given
    (an accuracy's interval to (0, 1): over few seeds the t-interval can pass 100%)."""
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * std / math.sqrt(len(values))
    low, high = float(mean - half), float(mean + half)
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return low, high


MIN_PAIRED_SEEDS = 3  # fewer paired values: no test verdict (a t-test on 1 degree of freedom)


def paired_t_test(reference: list[float], other: list[float]) -> dict:
    """Paired t-test of other - reference over seeds (lists in the same seed order, n ≥ 2).

    diff: mean difference; ci: its 95% t-interval; p, t: two-sided test of diff = 0. When every
    difference is the same, t is undefined (scipy would warn and return nan): p and t are None
    and p_text says why."""
    diffs = [o - r for r, o in zip(reference, other)]
    result = {"diff": statistics.fmean(diffs), "n": len(diffs)}
    if max(diffs) - min(diffs) <= 1e-12:  # equal up to float rounding
        return {**result, "ci": (diffs[0], diffs[0]), "p": None, "t": None}
    test = stats.ttest_rel(other, reference)
    return {**result, "ci": t_interval(diffs), "p": float(test.pvalue), "t": float(test.statistic)}


def corrected_resampled_t_test(
    reference: list[float], other: list[float], n_train: int, n_test: int
) -> dict:
    """Corrected resampled t-test of other - reference over J paired values (folds × split
    seeds, in the same order in both lists), for the k-fold protocol.

    Nadeau & Bengio (2003), "Inference for the Generalization Error", Machine Learning 52:239-281,
    in the form of Bouckaert & Frank (2004), "Evaluating the Replicability of Significance Tests
    for Comparing Learning Algorithms", PAKDD 2004. With d_j = other_j - reference_j:

        d̄ = (1/J)·Σ d_j,   s² = Σ (d_j - d̄)² / (J - 1),
        t = d̄ / sqrt((1/J + n_test/n_train)·s²),   df = J - 1,

    p two-sided from Student's t with J - 1 degrees of freedom, and the 95% interval
    d̄ ± t_{0.975, J-1}·sqrt((1/J + n_test/n_train)·s²). The folds share training images, so the
    d_j are correlated and the plain paired t-test (variance s²/J) is far too confident; the
    n_test/n_train term is Nadeau & Bengio's correction for that. n_train counts the images a
    model learned from or was selected with, n_test the images it was tested on (means over the
    folds are fine: only their ratio enters).

    Returns diff (d̄), n (J), df, ci, t, p and reason. With J < 3 no test is made (p, t, ci None;
    reason "no test possible: fewer than 3 paired values"); when every d_j is equal, t is
    undefined (p, t None, ci (d̄, d̄), reason "no variance"), as in paired_t_test."""
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} reference values against {len(other)} others")
    diffs = [o - r for r, o in zip(reference, other)]
    j = len(diffs)
    result = {"diff": statistics.fmean(diffs) if diffs else None, "n": j, "df": j - 1}
    result |= {"ci": None, "t": None, "p": None, "reason": None}
    if j < 3:
        return result | {"reason": "no test possible: fewer than 3 paired values"}
    if max(diffs) - min(diffs) <= 1e-12:  # equal up to float rounding
        return result | {"ci": (diffs[0], diffs[0]), "reason": "no variance"}
    variance = (1 / j + n_test / n_train) * statistics.variance(diffs)
    se = math.sqrt(variance)
    t = result["diff"] / se
    half = stats.t.ppf(0.975, j - 1) * se
    return result | {
        "t": float(t),
        "p": float(2 * stats.t.sf(abs(t), j - 1)),
        "ci": (float(result["diff"] - half), float(result["diff"] + half)),
    }


def corrected_interval(
    values: list[float], n_train: int, n_test: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Interval for the mean of J ≥ 2 resampled accuracies (one per fold × split seed) with the
    Nadeau & Bengio (2003) correction, as Bouckaert & Frank (2004) use it:

        mean ± t_{(1+confidence)/2, J-1}·sqrt((1/J + n_test/n_train)·s²),

    s² the sample variance (ddof=1), clipped to [0, 1]. None for fewer than 2 values."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    se = math.sqrt((1 / len(values) + n_test / n_train) * statistics.variance(values))
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * se
    return max(0.0, float(mean - half)), min(1.0, float(mean + half))


def p_text(p: float | None) -> str:
    return "n/a (no variance)" if p is None else f"{p:.3g}"


def percent(value: float) -> str:
    return f"{100 * value:.2f}"


def percent_mean_std(mean_and_std: tuple[float, float | None]) -> str:
    """ "92.00 ± 2.00" (std None, from one value: "92.00")."""
    mean, std = mean_and_std
    return percent(mean) if std is None else f"{percent(mean)} ± {percent(std)}"


def percent_interval(interval: tuple[float, float] | None) -> str:
    return "–" if interval is None else f"[{percent(interval[0])}, {percent(interval[1])}]"


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion correct/n: sensible near 0 and 1, unlike Wald."""
    p, shrink = correct / n, 1 + z * z / n
    center = (p + z * z / (2 * n)) / shrink
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / shrink
    return center - half, center + half


def mcnemar(reference_correct: list[int], other_correct: list[int]) -> dict:
    """Exact McNemar test on the same images, and a Wald interval for the accuracy difference.

    b = reference right & other wrong, c = reference wrong & other right; only these discordant
    images carry information, and under H0 each is equally likely to fall either way."""
    pairs = list(zip(reference_correct, other_correct))
    b = sum(1 for ref, other in pairs if ref and not other)
    c = sum(1 for ref, other in pairs if other and not ref)
    n = len(pairs)
    p = 1.0 if b + c == 0 else float(stats.binomtest(min(b, c), b + c, 0.5).pvalue)
    diff = (c - b) / n
    se = math.sqrt(b + c - (c - b) ** 2 / n) / n
    ci = (diff - Z_95 * se, diff + Z_95 * se)
    return {"b": b, "c": c, "n": n, "diff": diff, "ci": ci, "p": p}

"""Small statistics for comparing runs: intervals over seeds or images, the paired t-test over
seeds, McNemar's test over images, and how hymtl prints them (percent points).

hymtl.report and scripts/paired_seeds.py both use these, so their numbers agree."""

from __future__ import annotations

import math
import statistics

from scipy import stats

Z_95 = 1.959964  # standard normal 0.975 quantile


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """mean ± t_{(1+confidence)/2, n-1}·s/√n over n ≥ 2 values."""
    mean, std = statistics.fmean(values), statistics.stdev(values)
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * std / math.sqrt(len(values))
    return float(mean - half), float(mean + half)


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

"""Each row against its `none` row: the difference in accuracy, its interval and a test.

The runs of two rows are paired by sample (seed; under holdout (split seed, seed); under kfold
(split seed, fold, seed)):

- reference and holdout: a paired t-test over the shared seeds when there are at least
  MIN_PAIRED_SEEDS of them (fewer: no test, the difference and its interval still shown; a
  t-test on one degree of freedom is no verdict); one shared seed (or one run each): exact
  McNemar on the images of val_predictions.csv (reference) or test_predictions.csv (holdout).
- kfold: the corrected resampled t-test over the paired folds (stats.corrected_resampled_t_test),
  again no test under MIN_PAIRED_SEEDS pairs.

A result is a dict: diff, ci, p, test (what was done, or why nothing), p_text, verdict, and the
label, regularizer, row and none_row it compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hymtl.reporting.protocols import split_sizes
from hymtl.reporting.rows import choose_reference
from hymtl.reporting.runs import read_predictions
from hymtl.reporting.settings import held_out_accuracy, sample_key, selection_accuracy
from hymtl.reporting.stats import (
    MIN_PAIRED_SEEDS,
    corrected_resampled_t_test,
    mcnemar,
    p_text,
    paired_t_test,
)


@dataclass(frozen=True)
class Pairing:
    """How the runs of two rows pair up, and what of each pair is compared."""

    key: Callable  # the runs of two rows with one key(run) are a pair
    score: Callable  # a run's accuracy
    predictions: str  # the run's per-image file that McNemar reads
    images: str  # what those images are, in McNemar's test text


REFERENCE = Pairing(lambda run: run.seed, selection_accuracy, "val_predictions.csv", "images")
HOLDOUT = Pairing(sample_key, held_out_accuracy, "test_predictions.csv", "test images")


def verdict(p: float | None) -> str:
    if p is None:
        return "not tested"
    return "significant (p<0.05)" if p < 0.05 else "not significant"


def untested(diff: float | None, test: str) -> dict:
    return {"diff": diff, "ci": None, "p": None, "test": test}


def paired_seeds_test(reference: list[float], other: list[float]) -> dict:
    """Paired t-test over the shared seeds (lists in the same seed order); with fewer than
    MIN_PAIRED_SEEDS of them no test is made (p None, "no test possible (2 seeds)"): the
    difference and its interval are shown, but a p-value on one degree of freedom is no verdict."""
    result = paired_t_test(reference, other)
    if result["n"] < MIN_PAIRED_SEEDS:
        reason = f"no test possible ({result['n']} seeds)"
        shown = "–" if result["p"] is not None else p_text(None)  # or: no variance either
        return {**result, "p": None, "t": None, "test": reason, "p_text": shown}
    test = f"paired t-test over {result['n']} seeds"
    return {**result, "test": test, "p_text": p_text(result["p"])}


def single_pair_test(reference, other, pairing: Pairing) -> dict:
    """Exact McNemar on the images both runs were scored on (the same image list in both
    prediction files); no test without that."""
    pair = (reference, other)
    ref_pred, other_pred = (read_predictions(run.path / pairing.predictions) for run in pair)
    if ref_pred and other_pred and ref_pred[0] == other_pred[0]:
        result = mcnemar(ref_pred[1], other_pred[1])
        test = f"exact McNemar (b={result['b']}, c={result['c']}, {result['n']} {pairing.images})"
        return {**result, "test": test}
    diff = pairing.score(other) - pairing.score(reference)
    return untested(diff, f"no test: no matching {Path(pairing.predictions).stem}")


def paired_comparison(reference: dict, other: dict, pairing: Pairing) -> dict:
    """`other` row against the `reference` row, their runs paired by pairing.key: the paired
    t-test over ≥2 shared samples (paired_seeds_test), McNemar for a single pair."""
    ref = {pairing.key(run): run for run in reference["runs"]}
    oth = {pairing.key(run): run for run in other["runs"]}
    common = sorted(set(ref) & set(oth), key=str)
    if len(common) >= 2:
        scores = [pairing.score(ref[k]) for k in common], [pairing.score(oth[k]) for k in common]
        return paired_seeds_test(*scores)
    if common or (len(ref) == 1 and len(oth) == 1):
        pair = (ref[common[0]], oth[common[0]]) if common else (*ref.values(), *oth.values())
        return single_pair_test(*pair, pairing)
    diff = other["accuracy"][0] - reference["accuracy"][0]
    return untested(diff, "no test: no seeds in common")


def kfold_comparison(reference: dict, other: dict) -> dict:
    """Runs paired by (split seed, fold, seed); corrected resampled t-test on test accuracy."""
    ref = {sample_key(run): run for run in reference["runs"]}
    oth = {sample_key(run): run for run in other["runs"]}
    common = sorted(set(ref) & set(oth), key=str)
    if not common:
        diff = other["accuracy"][0] - reference["accuracy"][0]
        return untested(diff, "no test: no (split seed, fold, seed) in common")
    n_train, n_test = split_sizes([ref[k] for k in common] + [oth[k] for k in common])
    result = corrected_resampled_t_test(
        [held_out_accuracy(ref[k]) for k in common],
        [held_out_accuracy(oth[k]) for k in common],
        round(n_train),
        round(n_test),
    )
    if result["n"] < MIN_PAIRED_SEEDS:
        return result | {"test": f"no test possible ({result['n']} paired values)", "p_text": "–"}
    test = (
        f"corrected resampled t-test over {result['n']} paired folds "
        f"(n_test/n_train = {round(n_test)}/{round(n_train)})"
    )
    return result | {"test": test, "p_text": p_text(result["p"])}


def compare_rows(
    rows: list[dict], candidates: Callable, compare: Callable, missing: str
) -> list[dict]:
    """Each non-`none` row against the one `none` row among candidates(row) (choose_reference),
    by compare(none_row, row); `missing` says why a row without one is not tested."""
    comparisons = []
    for row in rows:
        if row["regularizer"] == "none":
            continue
        none_row = choose_reference(row, candidates(row))
        result = untested(None, missing) if none_row is None else compare(none_row, row)
        result.setdefault("p_text", "–" if result["p"] is None else p_text(result["p"]))
        result |= {"label": row["label"], "regularizer": row["regularizer"], "row": row}
        result |= {"none_row": none_row, "verdict": verdict(result["p"])}
        comparisons.append(result)
    return comparisons


def compare_with_none(rows: list[dict]) -> list[dict]:
    """Each reference row against the `none` row of the same model and epochs (among several,
    e.g. `none` shown per sweep dir, the one from row's sweep dir); [] without a `none` row."""
    references = [row for row in rows if row["regularizer"] == "none"]
    if not references:
        return []

    def candidates(row: dict) -> list[dict]:
        same = (row["setting"].model, row["setting"].epochs)
        return [ref for ref in references if (ref["setting"].model, ref["setting"].epochs) == same]

    def compare(none_row: dict, row: dict) -> dict:
        return paired_comparison(none_row, row, REFERENCE)

    missing = "no test: no single `none` row of the same model, epochs and sweep"
    return compare_rows(rows, candidates, compare, missing)


def compare_tested(rows: list[dict]) -> list[dict]:
    """Each holdout/kfold row against the `none` row of the same model, epochs, protocol,
    select fraction and test set; the result is also row["comparison"]."""

    def candidates(row: dict) -> list[dict]:
        same = ("protocol", "test_set", "select_fraction")
        return [
            ref
            for ref in rows
            if ref["regularizer"] == "none"
            and (ref["setting"].model, ref["setting"].epochs)
            == (row["setting"].model, row["setting"].epochs)
            and all(ref[key] == row[key] for key in same)
        ]

    def compare(none_row: dict, row: dict) -> dict:
        if row["protocol"] == "kfold":
            return kfold_comparison(none_row, row)
        return paired_comparison(none_row, row, HOLDOUT)

    missing = "no test: no single `none` row of the same model, epochs and test set"
    comparisons = compare_rows(rows, candidates, compare, missing)
    for comparison in comparisons:
        comparison["row"]["comparison"] = comparison
    return comparisons

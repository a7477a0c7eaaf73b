"""How far a classifier's probabilities can be taken at their word: ECE, Brier score, NLL and
the per-bin table a reliability diagram is drawn from (plots.plot_reliability)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A zero probability on the true class would make the NLL infinite (and JSON-unfriendly): it is
# clipped to this first, so it counts as -ln(1e-12) ≈ 27.63 instead.
NLL_FLOOR = 1e-12


def calibration_metrics(
    probabilities: Sequence[Sequence[float]], targets: Sequence[int], bins: int = 15
) -> dict:
    """Calibration of `probabilities` (n rows × C classes, one softmax output per image) against
    `targets` (the n true class indices), as a plain-JSON dict:

    - `n`: the number of images; `bins`: the number of confidence bins.
    - `accuracy`: the share of images whose top-1 class (argmax of the row; the lowest class
      index on a tie) is the target.
    - `mean_confidence`: the mean top-1 confidence, the largest probability of each row.
    - `ece`: expected calibration error, Σ_b (n_b / n) · |acc_b − conf_b| over the `bins`
      equal-width bins of top-1 confidence, where n_b is the number of images in bin b, acc_b
      their accuracy and conf_b their mean top-1 confidence (empty bins add nothing). The bin
      edges are `numpy.linspace(0, 1, bins + 1)` (these floats, as they are); a confidence c
      falls in bin i when edges[i] < c <= edges[i + 1]: a confidence exactly on an inner edge
      goes in the bin below it, 1.0 in the last bin, and 0.0 in the first.
    - `brier`: the multi-class Brier score, the mean over images of Σ_k (p_k − y_k)² with y the
      one-hot target: the sum over all C classes, ranging over [0, 2], not the binary score
      (which is half of this for two classes).
    - `nll`: the mean negative log-likelihood, mean of −ln p_target (natural log), with
      p_target clipped to at least 1e-12 first, so a zero probability on the true class gives
      −ln(1e-12) ≈ 27.63 rather than infinity.
    - `reliability`: one dict per bin, lowest first: {"low", "high", "count", "accuracy",
      "confidence"}, the bin's edges, n_b, acc_b and conf_b; accuracy and confidence are None
      (JSON null) for an empty bin. The counts sum to n.

    Rows are taken as given: they are not renormalised, and a row that does not sum to 1 is not
    rejected (float32 softmax outputs are off by a few 1e-7). Raises ValueError for no images,
    rows of different lengths, empty rows, probabilities outside [0, 1] or not finite, a number
    of targets other than n, targets that are not integer class indices in [0, C), or bins < 1.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a whole number >= 1, got {bins!r}")
    probs = _probability_table(probabilities)
    n, classes = probs.shape
    labels = _target_indices(targets, n, classes)

    rows = np.arange(n)
    predicted = probs.argmax(axis=1)
    confidence = probs[rows, predicted]
    correct = predicted == labels

    one_hot = np.zeros_like(probs)
    one_hot[rows, labels] = 1.0
    brier = np.sum((probs - one_hot) ** 2, axis=1).mean()
    nll = -np.log(np.maximum(probs[rows, labels], NLL_FLOOR)).mean()

    ece, reliability = _reliability(confidence, correct, bins)
    return {
        "n": int(n),
        "bins": int(bins),
        "accuracy": float(correct.mean()),
        "mean_confidence": float(confidence.mean()),
        "ece": float(ece),
        "brier": float(brier),
        "nll": float(nll),
        "reliability": reliability,
    }


def _reliability(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[float, list]:
    """(ECE, the per-bin table) over `bins` equal-width bins of top-1 confidence (binning as
    calibration_metrics says)."""
    n = len(confidence)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # searchsorted(side="left") gives the first edge >= c, i + 1 for edges[i] < c <= edges[i+1];
    # c = 0 gives 0 and is moved into the first bin.
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    ece = 0.0
    reliability = []
    for b in range(bins):
        members = bin_of == b
        count = int(members.sum())
        accuracy = mean_conf = None
        if count:
            accuracy = float(correct[members].mean())
            mean_conf = float(confidence[members].mean())
            ece += count / n * abs(accuracy - mean_conf)
        reliability.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": count,
                "accuracy": accuracy,
                "confidence": mean_conf,
            }
        )
    return ece, reliability


def _probability_table(probabilities) -> np.ndarray:
    """The n × C table as float64, or a one-line ValueError saying what is wrong with it."""
    try:
        lengths = [len(row) for row in probabilities]
    except TypeError:
        raise ValueError(
            "probabilities must be a list of per-image rows of class probabilities (n × C)"
        ) from None
    if not lengths:
        raise ValueError("no images: probabilities is empty")
    if len(set(lengths)) > 1:
        first = next(i for i, length in enumerate(lengths) if length != lengths[0])
        raise ValueError(
            f"probability rows differ in length: row 0 has {lengths[0]} classes, "
            f"row {first} has {lengths[first]}"
        )
    if lengths[0] == 0:
        raise ValueError("probability rows are empty (0 classes)")
    try:
        probs = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("probabilities must be numbers (n × C)") from None
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be n × C, got an array of shape {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("probabilities must be finite and within [0, 1] (softmax outputs)")
    return probs


def _target_indices(targets, n: int, classes: int) -> np.ndarray:
    labels = np.asarray(targets)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(
            f"expected {n} targets (one per probability row), got shape {labels.shape}"
        )
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"targets must be integer class indices, got dtype {labels.dtype}")
    outside = (labels < 0) | (labels >= classes)
    if outside.any():
        first = int(np.argmax(outside))
        raise ValueError(
            f"targets must be class indices in [0, {classes}): target {first} is {labels[first]}"
        )
    return labels.astype(np.intp)


def calibration_of(reported: tuple) -> dict | None:
    """Calibration of the selected weights on the reported images (test, else val); None for
    an evaluation saved without per-class probabilities (a run resumed from an older hymtl)."""
    name, _, result = reported
    if not result.get("probabilities"):
        return None
    return {"set": name, **calibration_metrics(result["probabilities"], result["targets"])}

"""Calibration numbers checked against hand-computed tables, and the reliability diagram drawn."""

import json
import math

import pytest

from hymtl.training.calibration import calibration_metrics
from hymtl.training.plots import plot_reliability

# Two classes, top-1 confidences 0.9, 0.9, 0.6, 0.6: the 0.9 ones right and right, the 0.6
# ones right and wrong (the last row predicts class 1, the target is 0).
HAND_PROBS = [[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]]
HAND_TARGETS = [0, 1, 0, 0]


def bin_counts(result) -> list[int]:
    return [b["count"] for b in result["reliability"]]


def test_hand_table_ece_brier_nll_accuracy():
    result = calibration_metrics(HAND_PROBS, HAND_TARGETS)
    assert result["n"] == 4 and result["bins"] == 15
    # Two bins hold two images each: 0.9 (accuracy 2/2) and 0.6 (accuracy 1/2).
    # ECE = 2/4·|1 − 0.9| + 2/4·|0.5 − 0.6| = 0.05 + 0.05 = 0.1
    assert result["ece"] == pytest.approx(0.1)
    # Brier, Σ over both classes per row, then the mean:
    #   [0.9, 0.1] t0: 0.1² + 0.1² = 0.02     [0.1, 0.9] t1: 0.02
    #   [0.6, 0.4] t0: 0.4² + 0.4² = 0.32     [0.4, 0.6] t0: 0.6² + 0.6² = 0.72
    #   (0.02 + 0.02 + 0.32 + 0.72) / 4 = 1.08 / 4 = 0.27
    assert result["brier"] == pytest.approx(0.27)
    # NLL = −(ln 0.9 + ln 0.9 + ln 0.6 + ln 0.4) / 4 ≈ 0.409459
    expected_nll = -(2 * math.log(0.9) + math.log(0.6) + math.log(0.4)) / 4
    assert result["nll"] == pytest.approx(expected_nll)
    assert result["nll"] == pytest.approx(0.409459, abs=1e-6)
    # 3 of 4 right; mean confidence (0.9 + 0.9 + 0.6 + 0.6) / 4 = 0.75
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["mean_confidence"] == pytest.approx(0.75)


def test_hand_table_reliability_bins():
    result = calibration_metrics(HAND_PROBS, HAND_TARGETS)
    filled = [b for b in result["reliability"] if b["count"]]
    # 15 bins of width 1/15: 0.6 is exactly the edge 9/15, so it falls in (8/15, 9/15];
    # 0.9 falls in (13/15, 14/15].
    assert [(b["count"], b["accuracy"], b["confidence"]) for b in filled] == [
        (2, pytest.approx(0.5), pytest.approx(0.6)),
        (2, pytest.approx(1.0), pytest.approx(0.9)),
    ]
    assert filled[0]["high"] == 0.6 and filled[1]["low"] == pytest.approx(13 / 15)
    empty = [b for b in result["reliability"] if not b["count"]]
    assert len(empty) == 13
    assert all(b["accuracy"] is None and b["confidence"] is None for b in empty)
    assert set(result["reliability"][0]) == {"low", "high", "count", "accuracy", "confidence"}


def test_brier_is_the_sum_over_classes():
    # [0.9, 0.1] with target 0: (0.9 − 1)² + (0.1 − 0)² = 0.01 + 0.01 = 0.02 (the binary
    # score would be half of this).
    assert calibration_metrics([[0.9, 0.1]], [0])["brier"] == pytest.approx(0.02)
    # Three classes, certain and wrong: 1² + 1² = 2, the top of the range.
    assert calibration_metrics([[1.0, 0.0, 0.0]], [1])["brier"] == pytest.approx(2.0)
    # Certain and right: 0.
    assert calibration_metrics([[0.0, 0.0, 1.0]], [2])["brier"] == 0.0


def test_perfectly_calibrated_table_has_zero_ece():
    # Five images at confidence 0.8 with four right (accuracy 0.8), and two at 0.5 (a tie:
    # argmax picks class 0) with one right (accuracy 0.5): every bin's |acc − conf| is 0.
    probs = [[0.8, 0.2]] * 5 + [[0.5, 0.5]] * 2
    targets = [0, 0, 0, 0, 1, 0, 1]
    result = calibration_metrics(probs, targets, bins=10)
    assert result["ece"] == pytest.approx(0.0, abs=1e-12)
    assert result["accuracy"] == pytest.approx(5 / 7)
    assert result["mean_confidence"] == pytest.approx((5 * 0.8 + 2 * 0.5) / 7)


def test_zero_probability_on_the_target_gives_a_finite_nll():
    # p_target = 0 is clipped to 1e-12: −ln(1e-12) = 12·ln 10 ≈ 27.631021
    result = calibration_metrics([[1.0, 0.0]], [1])
    assert math.isfinite(result["nll"])
    assert result["nll"] == pytest.approx(27.631021, abs=1e-6)
    assert result["nll"] == pytest.approx(12 * math.log(10))
    # Confidence 1.0 (in the last bin), accuracy 0: ECE = 1·|0 − 1| = 1.
    assert result["ece"] == pytest.approx(1.0)
    json.dumps(result, allow_nan=False)  # plain JSON: no inf, no NaN


def test_bin_boundary_convention():
    # bins=5, edges 0, 0.2, 0.4, 0.6…, 0.8, 1; bin i is (edges[i], edges[i+1]], 0 in bin 0.
    probs = [
        [0.2, 0.2, 0.2, 0.2, 0.2],  # confidence exactly 0.2, an edge: bin 0, (0, 0.2]
        [0.25, 0.2, 0.2, 0.2, 0.15],  # 0.25: bin 1
        [0.4, 0.3, 0.3, 0.0, 0.0],  # exactly 0.4: bin 1, (0.2, 0.4]
        [1.0, 0.0, 0.0, 0.0, 0.0],  # exactly 1.0: the last bin, 4
        [0.0, 0.0, 0.0, 0.0, 0.0],  # 0.0 (not a softmax row, but allowed): bin 0
    ]
    result = calibration_metrics(probs, [0, 0, 0, 0, 0], bins=5)
    assert bin_counts(result) == [2, 2, 0, 0, 1]
    assert [b["low"] for b in result["reliability"]][:3] == [0.0, 0.2, 0.4]
    assert result["reliability"][-1]["high"] == 1.0
    assert result["reliability"][0]["confidence"] == pytest.approx(0.1)  # (0.2 + 0) / 2
    assert result["reliability"][1]["confidence"] == pytest.approx(0.325)  # (0.25 + 0.4) / 2


def test_bin_counts_sum_to_n_and_result_is_plain_json():
    probs = [[p, 1 - p] for p in (0.05, 0.3, 0.5, 0.51, 0.77, 0.99, 1.0, 0.0)]
    targets = [0, 1, 0, 1, 0, 0, 0, 1]
    result = calibration_metrics(probs, targets, bins=7)
    assert len(result["reliability"]) == 7
    assert sum(bin_counts(result)) == result["n"] == 8
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert result["reliability"][0]["low"] == 0.0 and result["reliability"][-1]["high"] == 1.0


def test_single_image_is_accepted():
    result = calibration_metrics([[0.3, 0.7]], [1], bins=1)
    # One bin: ECE = |1 − 0.7| = 0.3
    assert result["ece"] == pytest.approx(0.3)
    assert bin_counts(result) == [1]


@pytest.mark.parametrize(
    ("probabilities", "targets", "bins", "message"),
    [
        ([], [], 15, "no images"),
        ([[0.5, 0.5], [1.0]], [0, 0], 15, "differ in length"),
        ([[], []], [0, 0], 15, "empty"),
        ([0.5, 0.5], [0], 15, "rows"),
        ([[0.5, 0.5]], [0, 1], 15, "expected 1 targets"),
        ([[0.5, 0.5]], [2], 15, r"\[0, 2\)"),
        ([[0.5, 0.5]], [-1], 15, r"\[0, 2\)"),
        ([[0.5, 0.5]], [0.5], 15, "integer"),
        ([[2.3, -1.1]], [0], 15, r"within \[0, 1\]"),  # logits, not probabilities
        ([[float("nan"), 0.5]], [0], 15, "finite"),
        ([[0.5, 0.5]], [0], 0, "bins"),
    ],
)
def test_invalid_input_raises_one_line_value_error(probabilities, targets, bins, message):
    with pytest.raises(ValueError, match=message) as caught:
        calibration_metrics(probabilities, targets, bins=bins)
    assert "\n" not in str(caught.value)


def test_plot_reliability_writes_a_png(tmp_path):
    result = calibration_metrics(HAND_PROBS, HAND_TARGETS)
    path = tmp_path / "reliability.png"
    fig = plot_reliability(result, path, title="val")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    count_axis = fig.axes[1]
    assert len(count_axis.patches) == 2  # two filled bins; the 13 empty ones draw nothing


def test_plot_reliability_title_dollars_are_not_mathtext(tmp_path):
    # Unescaped, `\notacommand` between dollars fails mathtext's parser when the figure is saved.
    path = tmp_path / "reliability.png"
    title = r"$x$ run in /tmp/$HOME/a$b with class $\notacommand$"
    fig = plot_reliability(calibration_metrics(HAND_PROBS, HAND_TARGETS), path, title=title)
    assert path.exists()
    assert fig.get_suptitle().replace(r"\$", "$") == title


def test_plot_reliability_every_image_in_one_bin(tmp_path):
    result = calibration_metrics([[0.95, 0.05]] * 6, [0, 0, 0, 0, 0, 1])
    assert sum(1 for b in result["reliability"] if b["count"]) == 1
    path = tmp_path / "one_bin.png"
    fig = plot_reliability(result, path, title="$x$")
    assert path.stat().st_size > 0
    assert len(fig.axes[1].patches) == 1

import pytest

from hymtl.artifacts import MetricsLog, classification_metrics, read_metrics, write_json
from hymtl.plots import choose_grid_indices


def test_metrics_on_a_known_confusion_matrix():
    # true ants: 8 right, 2 called bees; true bees: 1 called ant, 9 right
    targets = [0] * 10 + [1] * 10
    preds = [0] * 8 + [1] * 2 + [0] * 1 + [1] * 9
    result = classification_metrics(targets, preds, ["ants", "bees"])
    assert result["confusion_matrix"] == [[8, 2], [1, 9]]
    assert result["accuracy"] == pytest.approx(17 / 20)
    precision = [8 / 9, 9 / 11]
    recall = [8 / 10, 9 / 10]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    assert result["macro"]["precision"] == pytest.approx(sum(precision) / 2)
    assert result["macro"]["recall"] == pytest.approx(sum(recall) / 2)
    assert result["macro"]["f1"] == pytest.approx(sum(f1) / 2)
    assert result["per_class"]["bees"]["precision"] == pytest.approx(9 / 11)
    assert result["n"] == 20


def test_metrics_log_appends_and_reads_back(tmp_path):
    row = dict(
        epoch=1,
        train_loss=0.5,
        train_penalty=0.0,
        train_acc=0.7,
        val_loss=0.4,
        val_acc=0.8,
        lr=0.001,
        seconds=1.5,
    )
    log = MetricsLog(tmp_path / "metrics.csv")
    log.append(row)
    log.close()
    log = MetricsLog(tmp_path / "metrics.csv")  # reopened: no second header
    log.append({**row, "epoch": 2})
    log.close()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["val_acc"] == 0.8


def test_json_written_atomically(tmp_path):
    write_json(tmp_path / "s.json", {"a": 1})
    assert (tmp_path / "s.json").read_text().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_grid_shows_errors_and_correct_ones():
    targets = [0] * 10
    preds = [0] * 8 + [1, 1]
    picked = choose_grid_indices(targets, preds, 4)
    assert {8, 9} <= set(picked) and len(picked) == 4
    assert len(choose_grid_indices(targets, preds, 16)) == 10

import pytest

from hymtl.run.artifacts import MetricsLog, classification_metrics, read_metrics, write_json
from hymtl.training.prediction_grid import choose_grid_indices, grid_caption


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


def test_grid_mix_matches_the_model_per_class_and_correctness():
    # hymenoptera-sized val split: 70 ants (10 wrong), 83 bees (6 wrong), a 16-image grid.
    targets = [0] * 70 + [1] * 83
    preds = [1] * 10 + [0] * 60 + [0] * 6 + [1] * 77
    picked = choose_grid_indices(targets, preds, 16)
    assert len(picked) == len(set(picked)) == 16
    wrong = [i for i in picked if targets[i] != preds[i]]
    # shares 16·n/153: ants right 6.27, ants wrong 1.05, bees right 8.05, bees wrong 0.63
    # -> 6, 1, 8 and the one leftover slot to the largest remainder (bees wrong)
    assert sum(targets[i] == 0 for i in picked) == 7 and len(wrong) == 2
    assert {targets[i] for i in wrong} == {0, 1}
    assert choose_grid_indices(targets, preds, 500) == list(range(153))
    assert "2 wrong shown; the model has 16 errors in 153" in grid_caption(targets, preds, picked)


def test_data_fingerprint_names_the_images_and_nothing_else(tmp_path):
    from hymtl.data import load_data
    from hymtl.data.toydata import make_toy_image_folder
    from hymtl.run.artifacts import data_fingerprint

    def fingerprint(root):
        return data_fingerprint(load_data("imagefolder", str(root), cache_images=False))

    first = fingerprint(make_toy_image_folder(tmp_path / "a"))
    assert first == fingerprint(make_toy_image_folder(tmp_path / "b"))  # same images elsewhere
    extra = tmp_path / "b" / "train" / "ants" / "ants_0.jpg"
    extra.write_bytes(extra.read_bytes() + b"\0")  # one file rewritten at another size
    assert fingerprint(tmp_path / "b") != first and len(first) == 64


def test_git_state_of_a_checkout_and_of_no_checkout(tmp_path):
    from pathlib import Path

    from hymtl.run.artifacts import git_state

    assert git_state(tmp_path) is None
    state = git_state(Path(__file__).parent)
    if state is not None:  # the tests run from a git checkout (CI's clone)
        assert len(state["commit"]) == 40 and isinstance(state["dirty"], bool)

"""predict and evaluate reproduce what the training run measured, from its checkpoint alone."""

import csv
import json
import os
import shutil

import pytest

from hymtl import evaluate as evaluate_cli
from hymtl import predict as predict_cli
from hymtl.run.artifacts import PREDICTION_COLUMNS
from hymtl.train import train

from .conftest import TINY, compose_config, make_toy_image_folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = make_toy_image_folder(tmp_path_factory.mktemp("data") / "images")
    # A val file whose name is not UTF-8 goes through training, val_predictions.csv and predict.
    bees = root / "val" / "bees"
    shutil.copyfile(bees / "bees_0.jpg", os.path.join(os.fsencode(bees), b"bees_\xff.jpg"))
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config(
        TINY + ["data=imagefolder", f"data.root={root}", "epochs=8", "optimizer.lr=0.01"]
    )
    return root, run_dir, train(cfg, run_dir)


@pytest.mark.slow
def test_evaluate_reproduces_the_summary(trained_run, tmp_path, capsys):
    root, run_dir, summary = trained_run
    code = evaluate_cli.main([f"ckpt={run_dir}/best.pt", f"data.root={root}", f"out={tmp_path}"])
    assert code == 0
    [report_file] = tmp_path.glob("evaluation-val-*.json")
    report = json.loads(report_file.read_text())
    best = summary["best_model"]
    assert report["n"] == summary["n_val"] == 13
    assert report["precision"] == "fp32"  # the default, whatever the run's precision
    assert report["confusion_matrix"] == best["confusion_matrix"]
    assert report["accuracy"] == pytest.approx(best["accuracy"])
    assert report["macro"] == pytest.approx(best["macro"])
    # The run's calibration (best epoch, val) is what evaluate measures from best.pt alone.
    for key in ("ece", "brier", "nll"):
        assert report["calibration"][key] == pytest.approx(summary["calibration"][key], abs=1e-5)
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_predict_matches_the_runs_val_predictions(trained_run, tmp_path):
    root, run_dir, _ = trained_run
    (root / "val" / "ants" / "broken.jpg").write_text("not an image")
    code = predict_cli.main(
        [f"ckpt={run_dir}/best.pt", f"inputs={root / 'val'}", f"out={tmp_path}"]
    )
    (root / "val" / "ants" / "broken.jpg").unlink()
    assert code == 0
    with open(tmp_path / "predictions.csv", encoding="utf-8") as handle:
        predicted = {row["path"]: row for row in csv.DictReader(handle)}
    with open(run_dir / "val_predictions.csv", encoding="utf-8") as handle:
        expected = {row["path"]: row for row in csv.DictReader(handle)}
    assert set(predicted) == set(expected)  # broken.jpg skipped, every val image predicted
    some_predicted, some_expected = next(iter(predicted.values())), next(iter(expected.values()))
    assert list(some_expected) == [*PREDICTION_COLUMNS, "p_ants", "p_bees"]
    assert list(some_predicted) == ["path", "predicted", "probability", "p_ants", "p_bees", "model"]
    assert some_predicted["model"] == str((run_dir / "best.pt").resolve())
    assert f"{root}/val/bees/bees_\\xff.jpg" in expected  # the same readable name in both
    for path, row in expected.items():
        assert predicted[path]["predicted"] == row["predicted"]
        assert float(predicted[path]["probability"]) == pytest.approx(
            float(row["probability"]), abs=1e-4
        )
        for name in ("p_ants", "p_bees"):  # one vocabulary: the same per-class columns
            assert float(predicted[path][name]) == pytest.approx(float(row[name]), abs=1e-4)
    assert (tmp_path / "predictions.png").stat().st_size > 1000


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert predict_cli.main([f"ckpt={tmp_path}/none.pt", "inputs=."]) == 2
    assert evaluate_cli.main(["ckpt"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "does not exist" in lines[0]
    assert lines[1].startswith("hymtl-evaluate: error: Error parsing override 'ckpt' missing EQUAL")

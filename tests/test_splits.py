"""Evaluation protocols: which images train, choose the epoch and test (hymtl/data/splits.py), and
the run directories a k-fold sweep leaves (split.csv, summary.json's test block)."""

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from hymtl import UserError
from hymtl.data import load_data
from hymtl.data.splits import partition, samples_sha256

from .conftest import TINY, compose_config, run_cli


def toy_samples(per_class=(10, 8), prefix="img"):
    return [
        (f"/data/{prefix}/{label}/{i:02d}.jpg", label)
        for label, count in enumerate(per_class)
        for i in range(count)
    ]


KFOLD = {"protocol": "kfold", "select_fraction": 0.25, "folds": 3, "fold": 0, "split_seed": 0}


def test_kfold_test_folds_are_disjoint_and_cover_every_image_once():
    train, val = toy_samples((10, 8), "train"), toy_samples((5, 4), "val")
    pooled = set(train + val)
    tests = []
    for fold in range(3):
        part = partition(train, val, {**KFOLD, "fold": fold})
        roles = [set(part.train), set(part.select), set(part.test)]
        assert set.union(*roles) == pooled and sum(map(len, roles)) == len(pooled)
        assert not (roles[2] & (roles[0] | roles[1]))  # never test and train/select at once
        tests.append(roles[2])
    assert Counter(sample for test in tests for sample in test) == Counter(pooled)
    # Stratified: 15 ants and 12 bees over 3 folds = 5 ants and 4 bees in each test fold.
    assert [Counter(t for _, t in test) for test in tests] == [{0: 5, 1: 4}] * 3


def test_the_partition_depends_on_the_images_and_split_seed_only():
    train, val = toy_samples((10, 8), "train"), toy_samples((5, 4), "val")
    first = partition(train, val, KFOLD)
    # The scan order does not matter; the training seed and regularizer are not inputs at all.
    again = partition(list(reversed(train)), list(reversed(val)), KFOLD)
    assert (set(first.test), set(first.select)) == (set(again.test), set(again.select))
    other = partition(train, val, {**KFOLD, "split_seed": 1})
    assert set(other.test) != set(first.test)


def test_holdout_tests_on_val_and_selects_from_train():
    train, val = toy_samples((12, 8), "train"), toy_samples((5, 4), "val")
    part = partition(train, val, {**KFOLD, "protocol": "holdout"})
    assert part.test == val
    assert set(part.train) | set(part.select) == set(train)
    assert Counter(t for _, t in part.select) == {0: 3, 1: 2}  # 25% of 12 ants and 8 bees
    reference = partition(train, val, {"protocol": "reference"})
    assert (reference.train, reference.select, reference.test) == (train, val, None)


def test_too_few_images_per_class_for_the_folds_is_one_clear_error():
    with pytest.raises(UserError, match=r"evaluation.folds=5 needs at least 5 usable images"):
        partition(toy_samples((3, 8)), [], {**KFOLD, "folds": 5})


def test_test_hash_names_the_images_not_the_folder():
    samples = toy_samples((3, 3))
    moved = [(path.replace("/data/", "/elsewhere/"), label) for path, label in samples]
    assert samples_sha256(samples, "/data") == samples_sha256(moved, "/elsewhere")
    relabelled = [(path, 1 - label) for path, label in samples]
    assert samples_sha256(relabelled, "/data") != samples_sha256(samples, "/data")


def test_one_folder_holdout_splits_with_split_seed_not_the_training_seed(tmp_path):
    from hymtl.data.toydata import write_class_images

    write_class_images(tmp_path / "flat", per_class=10)
    holdout = {**KFOLD, "protocol": "holdout"}
    splits = [
        load_data("imagefolder", str(tmp_path / "flat"), seed=seed, evaluation=holdout)
        for seed in (0, 1)
    ]
    assert splits[0].test.samples == splits[1].test.samples
    assert len(splits[0].test) == 4  # data.val_fraction 0.2 of 20 images


def test_bad_evaluation_values_are_refused_in_one_line():
    from hymtl.run.checks import check_config

    for override, message in [
        ("evaluation.fold=3", "evaluation.fold=3 must be in 0..2"),
        ("evaluation.folds=1", "evaluation.folds=1 must be >= 2"),
        ("evaluation.select_fraction=1.0", "evaluation.select_fraction=1.0 must be between"),
    ]:
        cfg = compose_config(["evaluation=kfold", "evaluation.folds=3", override])
        with pytest.raises(UserError, match=message):
            check_config(cfg)


def read_split(run_dir: Path) -> dict[str, set[str]]:
    roles: dict[str, set[str]] = {"train": set(), "select": set(), "test": set()}
    with open(run_dir / "split.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            roles[row["role"]].add((row["path"], row["label"]))
    return roles


@pytest.mark.slow
def test_kfold_sweep_tests_every_image_once_and_regularizers_share_folds(image_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *TINY,
        "data=imagefolder",
        f"data.root={image_root}",
        "epochs=1",
        "threads=1",
        "evaluation=kfold",
        "evaluation.folds=3",
        "evaluation.fold=0,1,2",
        "regularizer=none,l2sp",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${regularizer.name}_fold${evaluation.fold}",
    ]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    everything = set()
    tests = []
    for fold in range(3):
        none, l2sp = (read_split(sweep / f"{name}_fold{fold}") for name in ("none", "l2sp"))
        assert none == l2sp  # a different regularizer, the same folds
        assert not none["test"] & (none["train"] | none["select"])
        tests.append(none["test"])
        everything |= none["train"] | none["select"] | none["test"]
        summary = json.loads((sweep / f"none_fold{fold}" / "summary.json").read_text())
        evaluation, test = summary["evaluation"], summary["test"]
        assert (evaluation["protocol"], evaluation["fold"], evaluation["folds"]) == (
            "kfold",
            fold,
            3,
        )
        assert test["n"] == evaluation["n_test"] == len(none["test"])
        assert sum(map(sum, test["confusion_matrix"])) == test["n"]
        assert summary["calibration"]["set"] == "test" and summary["calibration"]["n"] == test["n"]
        assert (sweep / f"none_fold{fold}" / "test_predictions.csv").is_file()
        assert (sweep / f"none_fold{fold}" / "calibration.png").is_file()
    # 36 toy images (12+6 per class, train/ and val/ pooled): each tested exactly once.
    assert len(everything) == 36
    assert sorted(len(t) for t in tests) == [12, 12, 12]
    assert set.union(*tests) == everything and sum(map(len, tests)) == 36


@pytest.mark.slow
def test_reference_run_has_no_test_block_and_says_it_is_selection_biased(image_root, tmp_path):
    from hymtl.train import train

    cfg = compose_config(TINY + ["data=imagefolder", f"data.root={image_root}", "epochs=1"])
    summary = train(cfg, tmp_path / "run")
    assert "test" not in summary and "evaluation" not in summary
    assert "selection-biased" in summary["selection"]
    assert summary["calibration"]["set"] == "val"
    roles = read_split(tmp_path / "run")
    assert (len(roles["train"]), len(roles["select"]), len(roles["test"])) == (24, 12, 0)

"""hymtl.report counts seeds as seeds: a λ search is trials, and reruns of a seed (two sweeps
with seed 0, or one setting repeated) are shown side by side, never averaged into a mean ± std
or an interval over seeds."""

import csv
import json
import math
from pathlib import Path

import pytest

from hymtl.report import main
from hymtl.reporting.comparisons import compare_with_none
from hymtl.reporting.reference import summarize_by_regularizer
from hymtl.reporting.runs import find_run_dirs, load_run

from .test_report import write_run

Z = 1.959964


def fabricate(run_dir: Path, name: str, seed: int, accuracy: float, **config) -> Path:
    """write_run's run dir of regularizer `name`, with config keys (epochs, model, regularizer
    with its λ) replaced, as training would have saved them."""
    write_run(run_dir, name, seed, accuracy)
    summary = json.loads((run_dir / "summary.json").read_text())
    for key, value in config.items():
        summary["config"][key] = value
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def wilson(correct: int, n: int) -> tuple[float, float]:
    p, shrink = correct / n, 1 + Z**2 / n
    center = (p + Z**2 / (2 * n)) / shrink
    half = Z / shrink * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return center - half, center + half


@pytest.fixture
def two_seed0_sweeps(tmp_path: Path) -> tuple[Path, Path]:
    """The same study run twice with seed 0: none 90 / 80 %, l1 70 / 60 %."""
    sweep_a, sweep_b = tmp_path / "sweep_a", tmp_path / "sweep_b"
    for sweep, (none, l1) in ((sweep_a, (0.90, 0.70)), (sweep_b, (0.80, 0.60))):
        fabricate(sweep / "0", "none", 0, none)
        fabricate(sweep / "1", "l1", 0, l1)
    return sweep_a, sweep_b


def test_two_seed0_sweeps_are_rows_side_by_side_not_two_seeds(two_seed0_sweeps, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*map(str, two_seed0_sweeps), "--out", str(out)]) == 0
    console = capsys.readouterr().out.splitlines()
    # Before: "none  2  85.00 ± 7.07" with a t-interval over "2 seeds" of one seed.
    assert console[2].split() == ["none", "(sweep_a)", "1", "90.00"]
    assert console[3].split() == ["none", "(sweep_b)", "1", "80.00"]
    assert console[4].split() == ["l1", "(sweep_a)", "1", "70.00", "-20.00", "–"]
    assert console[5].split() == ["l1", "(sweep_b)", "1", "60.00", "-20.00", "–"]

    with open(out / "report.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["regularizer"], r["sweep_dir"], r["n_seeds"]) for r in table] == [
        ("none", "sweep_a", "1"),
        ("none", "sweep_b", "1"),
        ("l1", "sweep_a", "1"),
        ("l1", "sweep_b", "1"),
    ]
    low, high = wilson(90, 100)  # one run: interval over images, not over seeds
    assert float(table[0]["accuracy_ci_low"]) == pytest.approx(low)
    assert float(table[0]["accuracy_ci_high"]) == pytest.approx(high)
    assert table[0]["accuracy_std"] == ""
    # each l1 row against the none row of its own sweep: 70 - 90 and 60 - 80
    assert [float(r["diff_vs_none"]) for r in table[2:]] == pytest.approx([-0.20, -0.20])

    report = (out / "report.md").read_text()
    assert "| none (sweep_a) | 88.00 | 89.00 | 87.00 | 90.00 | [" in report
    assert "| 100 | 1 |" in report and "| 100 | 2 |" not in report
    assert "share seeds across `sweep_a`, `sweep_b`" in report
    assert "t-interval over seeds" not in report


def test_reruns_of_a_seed_in_one_sweep_are_rows_of_one_run_and_other_seeds_still_pool(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, accuracy in enumerate([0.90, 0.92, 0.94]):
        fabricate(sweep / f"none_{seed}", "none", seed, accuracy)
    fabricate(tmp_path / "rerun" / "none_0", "none", 0, 0.50)  # seed 0 again, elsewhere
    fabricate(sweep / "again" / "l1_0", "l1", 0, 0.70)
    fabricate(sweep / "l1_0", "l1", 0, 0.60)  # the same seed twice in one sweep dir
    runs = [load_run(d) for folder in (sweep, tmp_path / "rerun") for d in find_run_dirs(folder)]
    for run in runs:
        run.sweep_dir = sweep if run.path.is_relative_to(sweep) else tmp_path / "rerun"
    rows = summarize_by_regularizer(runs)
    assert [row["n_seeds"] for row in rows] == [1, 3, 1, 1]  # before: 4 and 2 "seeds"
    assert [(row["label"], row["n_seeds"]) for row in rows] == [
        ("none (rerun)", 1),
        ("none (sweep)", 3),
        ("l1 (sweep/again/l1_0)", 1),
        ("l1 (sweep/l1_0)", 1),
    ]
    assert rows[1]["accuracy"] == pytest.approx((0.92, 0.02)) and rows[1]["ci_method"] == "t"
    assert rows[0]["accuracy"] == (0.50, None) and rows[0]["ci_method"] == "wilson"
    # neither l1 row comes from one sweep dir's none row alone: both against `none (sweep)`
    comparisons = compare_with_none(rows)
    assert [c["diff"] for c in comparisons] == pytest.approx([0.70 - 0.90, 0.60 - 0.90])


def test_different_epochs_or_models_are_separate_rows(tmp_path):
    fabricate(tmp_path / "a", "none", 0, 0.90, epochs=3)
    fabricate(tmp_path / "b", "none", 1, 0.70, epochs=10)
    fabricate(tmp_path / "c", "none", 2, 0.60, epochs=10, model={"name": "mobilenet_v2"})
    rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(tmp_path)])
    assert [row["n_seeds"] for row in rows] == [1, 1, 1]  # before: one row of 3 "seeds"
    assert [(row["label"], row["n_seeds"], row["accuracy"]) for row in rows] == [
        ("none, mobilenet_v2, 10 epochs", 1, (0.60, None)),
        ("none, resnet18, 3 epochs", 1, (0.90, None)),
        ("none, resnet18, 10 epochs", 1, (0.70, None)),
    ]


def test_one_epoch_is_singular(tmp_path):
    fabricate(tmp_path / "a", "none", 0, 0.90, epochs=1)
    fabricate(tmp_path / "b", "none", 0, 0.70, epochs=3)
    rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(tmp_path)])
    assert [row["label"] for row in rows] == ["none, 1 epoch", "none, 3 epochs"]


def test_a_lambda_search_is_reported_as_trials_never_as_seeds(tmp_path, capsys):
    sweep = tmp_path / "search"
    # Five trials, all seed 0; the last two repeat the λ of the first two (a resumed search
    # under the old sampler): still one trial per run, never a second seed.
    lambdas = [(1e-3, 1e-4), (1e-2, 1e-5), (5e-2, 1e-3), (1e-3, 1e-4), (1e-2, 1e-5)]
    accuracies = [0.5833, 0.60, 0.40, 0.55, 0.62]
    for trial, ((l1, l2), accuracy) in enumerate(zip(lambdas, accuracies)):
        regularizer = {"name": "elasticnet", "l1": l1, "l2": l2}
        fabricate(sweep / f"trial_{trial}", "elasticnet", 0, accuracy, regularizer=regularizer)
    fabricate(sweep / "none_0", "none", 0, 0.90, regularizer={"name": "none"})
    assert main([str(sweep)]) == 0
    console = capsys.readouterr().out.splitlines()
    # Before: "elasticnet  5  57.07 ± 8.78  -32.93 ..." as if the trials were five seeds.
    assert not any(line.startswith("elasticnet ") for line in console)
    assert console[1:] == [
        "regularizer  seeds  accuracy %      vs none (pp)  p",
        "none             1  90.00",
        "elasticnet: λ search, 5 trials (one run per λ: trials, not seeds); best 62.00% "
        "at λ1=0.01, λ2=1e-05",
    ]
    rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(sweep)])
    assert [row["label"] for row in rows] == ["none"]
    report = (sweep / "report.md").read_text()
    table = report.split("## Best-epoch")[1].split("##")[0]
    assert "elasticnet" not in table.split("Not in this table")[0]
    assert "Not in this table: 5 λ-search trials" in table
    assert "## λ search (5 completed trials)" in report
    assert (
        "the `elasticnet` runs differ in λ (a λ search): its 5 single-seed runs are trials"
        in report
    )
    with open(sweep / "report.csv", newline="") as handle:
        assert [row["regularizer"] for row in csv.DictReader(handle)] == ["none"]


def test_a_lambda_search_alone_prints_no_empty_table(tmp_path, capsys):
    sweep = tmp_path / "search"
    for trial, l1 in enumerate([1e-3, 1e-2, 5e-2]):
        regularizer = {"name": "l1", "l1": l1}
        fabricate(sweep / f"trial_{trial}", "l1", 0, 0.80 - trial / 10, regularizer=regularizer)
    assert main([str(sweep)]) == 0
    console = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("regularizer ") for line in console)  # no header alone
    assert console[-1].startswith("l1: λ search, 3 trials")
    report = (sweep / "report.md").read_text()
    assert "## Each regularizer against `none`" not in report
    assert "Only λ-search trials (3): see the λ search section." in report


def test_a_lambda_rerun_on_several_seeds_is_a_seed_row_beside_the_trials(tmp_path):
    for trial, l1 in enumerate([1e-3, 1e-2, 5e-2]):
        regularizer = {"name": "l1", "l1": l1}
        fabricate(tmp_path / f"trial_{trial}", "l1", 0, 0.80 - trial / 10, regularizer=regularizer)
    for seed, accuracy in zip((1, 2), (0.84, 0.86)):  # the best λ again, on fresh seeds
        regularizer = {"name": "l1", "l1": 1e-3}
        fabricate(tmp_path / f"check_{seed}", "l1", seed, accuracy, regularizer=regularizer)
    rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(tmp_path)])
    # λ1=1e-3 has seeds 0, 1, 2 (the trial and the check): a setting with three seeds
    assert [row["n_seeds"] for row in rows] == [3]  # before: 5 "seeds", all λ pooled
    assert [(row["label"], row["n_seeds"]) for row in rows] == [("l1, λ1=0.001 λ2=0", 3)]
    assert rows[0]["accuracy"] == pytest.approx((0.8333333, 0.0305505), abs=1e-6)


def test_a_row_without_a_none_row_of_its_model_is_not_compared(tmp_path):
    fabricate(tmp_path / "0", "none", 0, 0.90)
    fabricate(tmp_path / "1", "l1", 0, 0.70, model={"name": "mobilenet_v2"})
    rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(tmp_path)])
    [comparison] = compare_with_none(rows)  # before: l1 of MobileNetV2 - none of ResNet-18
    assert comparison["label"] == "l1, mobilenet_v2" and comparison["diff"] is None
    assert comparison["verdict"] == "not tested" and comparison["test"].startswith("no test")


def test_distinct_values_sort_numbers_numerically():
    from hymtl.reporting.tables import distinct

    assert distinct([25, 3, 1, 2, 25, None, 5]) == "1, 2, 3, 5, 25"
    assert distinct(["resnet18", "mobilenet_v2", None]) == "mobilenet_v2, resnet18"
    assert distinct([None]) == "unknown"


def launched_with(run_dir: Path, search: str | None) -> None:
    """The .hydra/hydra.yaml Hydra writes, as far as the report reads it."""
    (run_dir / ".hydra").mkdir(exist_ok=True)
    choice = "null" if search is None else search
    (run_dir / ".hydra" / "hydra.yaml").write_text(
        f"hydra:\n  runtime:\n    choices:\n      hparams_search: {choice}\n"
    )


def test_a_grid_sweep_over_lambda_is_settings_and_a_recorded_search_is_trials(tmp_path):
    """Runs that differ in λ are a search only when Hydra recorded hparams_search= for them:
    `-m regularizer=elasticnet lambda_l1=0.01,0.03` is two settings of one seed each."""
    grid, search = tmp_path / "grid", tmp_path / "search"
    for index, (l1, accuracy) in enumerate([(0.01, 0.70), (0.03, 0.60)]):
        regularizer = {"name": "elasticnet", "l1": l1, "l2": 1e-4}
        for sweep, launched in ((grid, None), (search, "lambda_search")):
            run = fabricate(sweep / str(index), "elasticnet", 0, accuracy, regularizer=regularizer)
            launched_with(run, launched)
    grid_rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(grid)])
    labels = sorted(row["label"] for row in grid_rows)
    assert labels == ["elasticnet, λ1=0.01 λ2=0.0001", "elasticnet, λ1=0.03 λ2=0.0001"]
    search_rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(search)])
    assert search_rows == []  # both runs are trials of the search, listed in its own section

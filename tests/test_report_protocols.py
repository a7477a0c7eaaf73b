"""hymtl.report on holdout/kfold runs (a test set the epoch choice never saw), on fabricated run
dirs in the format hymtl.train writes (no training): test rows never pool different test sets,
the corrected resampled t-test over folds, McNemar on test_predictions.csv, λ-search trials
named by their selection score and shown with their test score."""

import csv
import hashlib
import json
import math
from pathlib import Path

import pytest
from scipy import stats

from hymtl.report import main
from hymtl.reporting.comparisons import compare_tested
from hymtl.reporting.console import summary_table
from hymtl.reporting.protocols import summarize_tested
from hymtl.reporting.reference import summarize_by_regularizer
from hymtl.reporting.runs import find_run_dirs, load_run
from hymtl.reporting.settings import KNOWN_ORDER
from hymtl.reporting.stats import corrected_interval, corrected_resampled_t_test

from .test_report import write_run

METRIC_HEADER = "epoch,train_loss,train_penalty,train_acc,val_loss,val_acc,lr,seconds"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def predictions(correct: list[int], folder: str = "test") -> str:
    lines = ["path,target,pred,prob,correct"]
    lines += [f"{folder}/img_{i}.jpg,ants,ants,0.9,{c}" for i, c in enumerate(correct)]
    return "\n".join(lines) + "\n"


def write_tested_run(
    run_dir: Path,
    regularizer: str,
    seed: int,
    test_accuracy: float | None = None,
    *,
    protocol: str = "kfold",
    fold: int = 0,
    folds: int = 5,
    split_seed: int = 0,
    select_accuracy: float = 0.95,
    pool: str = "pool-a",
    test_images: str | None = None,
    n_train: int = 80,
    n_select: int = 20,
    n_test: int = 25,
    correct: list[int] | None = None,
    regularizer_config: dict | None = None,
    calibration: bool = True,
) -> Path:
    """A completed holdout/kfold run dir as hymtl.train writes it. The test images (and so
    test_sha256) follow from pool, split seed and fold unless test_images names them. With
    `correct` (0/1 per test image) the test accuracy comes from it and test_predictions.csv is
    written. Test macro precision/recall/F1 are accuracy - 0.02/0.01/0.03."""
    run_dir.mkdir(parents=True)
    if correct is not None:
        test_accuracy, n_test = sum(correct) / len(correct), len(correct)
        (run_dir / "test_predictions.csv").write_text(predictions(correct))
    # val_predictions.csv: the select images, all right (McNemar must not read these)
    (run_dir / "val_predictions.csv").write_text(predictions([1] * n_select, "select"))
    rows = [f"{e},0.5,0.0,0.8,0.3,{select_accuracy:.3f},0.001,1.0" for e in (1, 2, 3)]
    (run_dir / "metrics.csv").write_text("\n".join([METRIC_HEADER, *rows]) + "\n")
    is_kfold = protocol == "kfold"
    evaluation_config = {"protocol": protocol, "select_fraction": 0.2, "folds": folds}
    evaluation_config |= {"fold": fold, "split_seed": split_seed}
    regularizer_config = regularizer_config or {"name": regularizer, "l1": 0.0, "l2": 0.0}
    config = {
        "model": {"name": "resnet18"},
        "regularizer": {"weight_decay": 0.0, "alpha": 0.0, "beta": 0.0, **regularizer_config},
        "epochs": 3,
        "seed": seed,
        "lambda_l1": 0.0,
        "lambda_l2": 0.0,
        "evaluation": evaluation_config,
    }
    test_name = test_images or (f"{pool}/{split_seed}/{fold}" if is_kfold else f"{pool}/val")
    macro = {
        "precision": test_accuracy - 0.02,
        "recall": test_accuracy - 0.01,
        "f1": test_accuracy - 0.03,
    }
    select = {"n": n_select, "accuracy": select_accuracy, "macro": macro}
    summary = {
        "status": "completed",
        "config": config,
        "n_val": n_select,
        "best_val_acc": select_accuracy,
        "best_model": select,
        "final_model": select,
        "evaluation": {
            "protocol": protocol,
            "fold": fold if is_kfold else None,
            "folds": folds if is_kfold else None,
            "split_seed": split_seed,
            "select_fraction": 0.2,
            "n_train": n_train,
            "n_select": n_select,
            "n_test": n_test,
            "test_sha256": sha(test_name),
            "pool_sha256": sha(pool),
        },
        "test": {
            "n": n_test,
            "accuracy": test_accuracy,
            "macro": macro,
            "weighted": macro,
            "per_class": {},
            "confusion_matrix": [[1, 0], [0, 1]],
            "epoch": 2,
        },
    }
    if calibration:
        summary["calibration"] = {
            "set": "test",
            "ece": 0.05 + seed / 100,
            "brier": 0.2,
            "nll": 0.4,
            "n": n_test,
            "bins": 15,
        }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def load(*sweeps: Path) -> list:
    runs = []
    for sweep in sweeps:
        for run_dir in find_run_dirs(sweep):
            run = load_run(run_dir)
            run.sweep_dir = sweep
            runs.append(run)
    return runs


NONE_FOLDS = [0.80, 0.84, 0.76, 0.88, 0.80]
L1_FOLDS = [0.84, 0.92, 0.76, 0.92, 0.84]  # l1 - none: 0.04, 0.08, 0.00, 0.04, 0.04


@pytest.fixture
def kfold_sweep(tmp_path: Path) -> Path:
    """none and l1 on the 5 folds of one pool, seed 0: n_train + n_select = 100, n_test = 25."""
    sweep = tmp_path / "kfold"
    for name, accuracies in (("none", NONE_FOLDS), ("l1", L1_FOLDS)):
        for fold, accuracy in enumerate(accuracies):
            regularizer = {"name": name, "l1": 1e-4 if name == "l1" else 0.0}
            write_tested_run(
                sweep / f"{name}_fold{fold}",
                name,
                0,
                accuracy,
                fold=fold,
                regularizer_config=regularizer,
            )
    return sweep


# stats ---------------------------------------------------------------------------------------


def test_corrected_resampled_t_test_by_hand():
    reference, other = [0.80, 0.80, 0.80], [0.82, 0.84, 0.80]  # d = 0.02, 0.04, 0.00
    result = corrected_resampled_t_test(reference, other, n_train=100, n_test=25)
    # mean 0.02, s² = 0.0004, corrected variance (1/3 + 1/4)·0.0004 = 0.000233…
    variance = (1 / 3 + 1 / 4) * 0.0004
    assert variance == pytest.approx(0.00023333333)
    assert result["diff"] == pytest.approx(0.02)
    assert result["t"] == pytest.approx(1.3093, abs=1e-4)
    assert result["t"] == pytest.approx(0.02 / math.sqrt(variance))
    assert result["p"] == pytest.approx(2 * stats.t.sf(0.02 / math.sqrt(variance), 2))
    assert result["p"] == pytest.approx(0.3206, abs=1e-4)
    half = stats.t.ppf(0.975, 2) * math.sqrt(variance)
    assert result["ci"] == pytest.approx((0.02 - half, 0.02 + half))
    assert result["n"] == 3 and result["df"] == 2 and result["reason"] is None
    # the uncorrected paired t-test would claim much more: t = 0.02 / (0.02 / √3) = 1.73
    assert stats.ttest_rel(other, reference).statistic == pytest.approx(math.sqrt(3))


def test_corrected_t_test_needs_three_values_and_variance():
    two = corrected_resampled_t_test([0.8, 0.8], [0.9, 0.85], 100, 25)
    assert two["p"] is None and two["ci"] is None and two["t"] is None
    assert two["reason"] == "no test possible: fewer than 3 paired values"
    assert two["diff"] == pytest.approx(0.075) and two["n"] == 2
    same = corrected_resampled_t_test([0.8, 0.7, 0.6], [0.85, 0.75, 0.65], 100, 25)
    assert same["p"] is None and same["reason"] == "no variance"
    assert same["ci"] == pytest.approx((0.05, 0.05))
    with pytest.raises(ValueError):
        corrected_resampled_t_test([0.8], [0.8, 0.9], 100, 25)


def test_corrected_interval_by_hand_and_clipped():
    values = [0.80, 0.84, 0.76, 0.88, 0.80]
    mean, variance = 0.816, 0.00208  # s² of the values, ddof=1
    assert sum((v - mean) ** 2 for v in values) / 4 == pytest.approx(variance)
    half = stats.t.ppf(0.975, 4) * math.sqrt((1 / 5 + 25 / 100) * variance)
    assert corrected_interval(values, 100, 25) == pytest.approx((mean - half, mean + half))
    assert corrected_interval([0.98, 1.0, 1.0, 0.96], 100, 25)[1] == 1.0  # clipped at 100 %
    assert corrected_interval([0.9], 100, 25) is None


# kfold rows and the corrected test -----------------------------------------------------------


def test_kfold_rows_aggregate_five_folds_and_use_the_corrected_t_test(kfold_sweep, tmp_path):
    runs = load(kfold_sweep)
    assert summarize_by_regularizer(runs) == []  # no reference-protocol run
    rows, notes = summarize_tested(runs)
    assert notes == []
    assert [(row["label"], row["n_runs"], row["coverage"]) for row in rows] == [
        ("none", 5, "5/5 folds × 1 split seed"),
        ("l1", 5, "5/5 folds × 1 split seed"),
    ]
    none, l1 = rows
    assert none["accuracy"] == pytest.approx((0.816, math.sqrt(0.00208)))
    assert none["accuracy_ci"] == pytest.approx(corrected_interval(NONE_FOLDS, 100, 25))
    assert none["selection"] == pytest.approx((0.95, 0.0))
    assert l1["precision"][0] == pytest.approx(0.856 - 0.02)
    assert none["calibration"]["ece"] == pytest.approx(0.05)

    [comparison] = compare_tested(rows)
    d = [o - r for r, o in zip(NONE_FOLDS, L1_FOLDS)]
    t = 0.04 / math.sqrt((1 / 5 + 25 / 100) * 0.0008)  # mean 0.04, s² 0.0008
    assert comparison["diff"] == pytest.approx(sum(d) / 5) == pytest.approx(0.04)
    assert comparison["t"] == pytest.approx(t) == pytest.approx(2.1082, abs=1e-4)
    p = 2 * stats.t.sf(t, 4)
    assert comparison["p"] == pytest.approx(p)
    assert comparison["test"] == (
        "corrected resampled t-test over 5 paired folds (n_test/n_train = 25/100)"
    )
    assert comparison["verdict"] == "not significant"

    out = tmp_path / "out"
    assert main([str(kfold_sweep), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "## Best-epoch" not in report  # only protocol runs: no empty reference tables
    assert "## Each regularizer against `none` (best-epoch" not in report
    assert "- evaluation protocol: kfold (10 runs:" in report
    tested = report.split("## Test metrics (held-out, selection never saw these images)")[1]
    assert "| none | kfold | 5-fold, pool " in tested
    assert "| 5 | 5/5 folds × 1 split seed | 81.60 ± 4.56 |" in tested
    assert "Selection acc (chose the epoch)" in tested and "| 95.00 ± 0.00 |" in tested
    assert "### Calibration of the selected weights on the test images" in tested
    assert "ECE (15 bins)" in tested
    against = report.split("## Each regularizer against `none` on the test images")[1]
    assert f"| +4.00 | [{100 * comparison['ci'][0]:.2f}, " in against
    assert f"| {p:.3g} | corrected resampled t-test over 5 paired folds" in against
    assert "sqrt((1/J + n_test/n_train)·s²(d))" in against
    assert "No correction for multiple comparisons" in against


def test_two_folds_are_no_test(tmp_path):
    sweep = tmp_path / "two_folds"
    for fold, (none, l1) in enumerate([(0.80, 0.84), (0.84, 0.92)]):
        write_tested_run(sweep / f"none_{fold}", "none", 0, none, fold=fold)
        write_tested_run(sweep / f"l1_{fold}", "l1", 0, l1, fold=fold)
    rows, _ = summarize_tested(load(sweep))
    assert rows[0]["coverage"] == "2/5 folds × 1 split seed"
    [comparison] = compare_tested(rows)
    assert comparison["test"] == "no test possible (2 paired values)"
    assert comparison["p"] is None and comparison["p_text"] == "–"
    assert comparison["verdict"] == "not tested"
    assert comparison["diff"] == pytest.approx(0.06)

    assert main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| – | no test possible (2 paired values) | not tested |" in report


def test_different_data_or_folds_counts_are_never_pooled(tmp_path):
    sweep = tmp_path / "mixed"
    for fold in range(3):
        write_tested_run(sweep / f"a_none_{fold}", "none", 0, 0.80, fold=fold, pool="pool-a")
        write_tested_run(sweep / f"b_none_{fold}", "none", 0, 0.60, fold=fold, pool="pool-b")
        write_tested_run(sweep / f"c_none_{fold}", "none", 0, 0.70, fold=fold, folds=10)
        write_tested_run(sweep / f"a_l1_{fold}", "l1", 0, 0.82 + fold / 100, fold=fold)
    rows, notes = summarize_tested(load(sweep))
    # before: one `none` row of 9 "folds" averaging three different test sets
    pool_a, pool_b = sha("pool-a")[:8], sha("pool-b")[:8]
    assert {row["label"]: (row["n_runs"], row["accuracy"][0]) for row in rows} == {
        f"l1, 5-fold, pool {pool_a}": (3, pytest.approx(0.83)),
        f"none, 10-fold, pool {pool_a}": (3, pytest.approx(0.70)),
        f"none, 5-fold, pool {pool_a}": (3, pytest.approx(0.80)),
        f"none, 5-fold, pool {pool_b}": (3, pytest.approx(0.60)),
    }
    [note] = notes
    assert note.startswith("different test sets: the kfold runs were tested on 3 test sets")
    assert "different data (pool_sha256) and different folds counts" in note
    # l1 (pool a, 5 folds) against the `none` row of its own test set only
    [comparison] = compare_tested(rows)
    assert comparison["none_row"]["label"] == f"none, 5-fold, pool {pool_a}"
    assert comparison["diff"] == pytest.approx(0.03)


def test_one_fold_with_two_test_sets_is_split_per_sweep_dir(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for fold in range(3):
        write_tested_run(old / f"none_{fold}", "none", fold, 0.80)  # seeds 0-2 on fold 0
        # the same pool and fold, other test images (split code changed): never pooled
        write_tested_run(new / f"none_{fold}", "none", fold + 3, 0.70, test_images=f"x{fold}")
    rows, notes = summarize_tested(load(old, new))
    assert sorted((row["label"], row["n_runs"]) for row in rows) == [
        ("none (new, test set 1)", 1),
        ("none (new, test set 2)", 1),
        ("none (new, test set 3)", 1),
        ("none (old)", 3),
    ]
    assert any(note.startswith("different test sets: `none` kfold runs name") for note in notes)
    assert not any("rerun" in note for note in notes)  # other test images, not reruns


def test_reruns_of_a_fold_and_seed_are_rows_per_sweep_dir(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for sweep, base in ((first, 0.80), (second, 0.70)):
        for fold in range(3):
            write_tested_run(sweep / f"none_{fold}", "none", 0, base + fold / 100, fold=fold)
    rows, notes = summarize_tested(load(first, second))
    assert [(row["label"], row["n_runs"]) for row in rows] == [
        ("none (first)", 3),
        ("none (second)", 3),
    ]
    assert rows[0]["accuracy"][0] == pytest.approx(0.81)
    assert any("a rerun, not another sample" in note for note in notes)


# holdout ------------------------------------------------------------------------------------


def test_holdout_with_one_seed_uses_mcnemar_on_test_predictions(tmp_path):
    # 20 test images: b=7 only none right, c=2 only l2 right
    none_correct = [1] * 9 + [1] * 7 + [0] * 2 + [0] * 2
    l2_correct = [1] * 9 + [0] * 7 + [1] * 2 + [0] * 2
    sweep = tmp_path / "holdout"
    write_tested_run(sweep / "none", "none", 0, protocol="holdout", correct=none_correct)
    regularizer = {"name": "l2", "weight_decay": 5e-4}
    write_tested_run(
        sweep / "l2",
        "l2",
        0,
        protocol="holdout",
        correct=l2_correct,
        regularizer_config=regularizer,
    )
    rows, _ = summarize_tested(load(sweep))
    assert rows[0]["ci_method"] == "wilson" and rows[0]["coverage"] == "1 seed × 1 split seed"
    [comparison] = compare_tested(rows)
    assert (comparison["b"], comparison["c"], comparison["n"]) == (7, 2, 20)
    assert comparison["p"] == pytest.approx(0.1796875)
    assert comparison["diff"] == pytest.approx(-0.25)
    assert comparison["test"] == "exact McNemar (b=7, c=2, 20 test images)"

    (sweep / "l2" / "test_predictions.csv").write_text(predictions(l2_correct, "elsewhere"))
    [comparison] = compare_tested(summarize_tested(load(sweep))[0])
    assert comparison["p"] is None and comparison["test"].startswith("no test")


def test_holdout_with_two_seeds_uses_the_paired_t_test(tmp_path):
    sweep = tmp_path / "holdout"
    for seed, (none, l2) in enumerate([(0.80, 0.84), (0.82, 0.88), (0.78, 0.80)]):
        write_tested_run(sweep / f"none_{seed}", "none", seed, none, protocol="holdout")
        write_tested_run(sweep / f"l2_{seed}", "l2", seed, l2, protocol="holdout")
    rows, _ = summarize_tested(load(sweep))
    assert rows[0]["ci_method"] == "t" and rows[0]["coverage"] == "3 seeds × 1 split seed"
    [comparison] = compare_tested(rows)
    d = [0.04, 0.06, 0.02]
    t = 0.04 / (stats.tstd(d) / math.sqrt(3))
    assert comparison["test"] == "paired t-test over 3 seeds"
    assert comparison["p"] == pytest.approx(2 * stats.t.sf(t, 2))


def test_holdout_with_two_seeds_is_no_test(tmp_path, capsys):
    """Issue 19: a t-test over 2 paired seeds (1 degree of freedom) is no verdict. holdout says
    so, as kfold does under 3 pairs: no p-value, the difference and its interval still shown."""
    sweep = tmp_path / "holdout"
    for seed, (none, l2) in enumerate([(0.80, 0.84), (0.82, 0.88)]):
        write_tested_run(sweep / f"none_{seed}", "none", seed, none, protocol="holdout")
        write_tested_run(sweep / f"l2_{seed}", "l2", seed, l2, protocol="holdout")
    rows, _ = summarize_tested(load(sweep))
    assert [row["coverage"] for row in rows] == ["2 seeds × 1 split seed"] * 2
    # l2's t-interval over 0.84 and 0.88 would reach 1.114: an accuracy's stops at 100%
    assert rows[1]["accuracy_ci"][1] == 1.0 and rows[1]["accuracy_ci"][0] < 0.86
    [comparison] = compare_tested(rows)
    assert comparison["test"] == "no test possible (2 seeds)"
    assert comparison["p"] is None and comparison["t"] is None and comparison["p_text"] == "–"
    assert comparison["verdict"] == "not tested"
    assert comparison["diff"] == pytest.approx(0.05)  # l2 - none: 0.04, 0.06
    half = stats.t.ppf(0.975, 1) * stats.tstd([0.04, 0.06]) / math.sqrt(2)
    assert comparison["ci"] == pytest.approx((0.05 - half, 0.05 + half))
    # what the t-test over these 2 seeds would have claimed: p = 0.126
    t_test_p = f"{stats.ttest_rel([0.84, 0.88], [0.80, 0.82]).pvalue:.3g}"

    out = tmp_path / "out"
    assert main([str(sweep), "--out", str(out)]) == 0
    console = capsys.readouterr().out.splitlines()
    assert console[-1].split() == ["l2", "[holdout]", "2", "86.00", "±", "2.83", "+5.00", "–"]
    report = (out / "report.md").read_text()
    against = report.split("## Each regularizer against `none` on the test images")[1]
    assert "| +5.00 | [" in against
    assert "| – | no test possible (2 seeds) | not tested |" in against
    assert t_test_p not in report and "paired t-test over 2 seeds" not in report
    with open(out / "report.csv", newline="") as handle:
        l2 = [row for row in csv.DictReader(handle) if row["regularizer"] == "l2"]
    assert [(row["p_value"], row["test"]) for row in l2] == [("", "no test possible (2 seeds)")]


# reference runs, the whole command, λ search -------------------------------------------------


def add_calibration(run_dir: Path, ece: float, brier: float) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["calibration"] = {"set": "val", "ece": ece, "brier": brier, "nll": 0.3, "n": 100}
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_a_directory_of_reference_and_kfold_runs(kfold_sweep, tmp_path, capsys):
    for seed, (none, l1) in enumerate([(0.90, 0.80), (0.92, 0.83), (0.94, 0.86)]):
        write_run(kfold_sweep / "reference" / f"none_{seed}", "none", seed, none)
        write_run(kfold_sweep / "reference" / f"l1_{seed}", "l1", seed, l1)
    add_calibration(kfold_sweep / "reference" / "none_0", 0.04, 0.12)
    add_calibration(kfold_sweep / "reference" / "none_1", 0.06, 0.14)

    out = tmp_path / "out"
    assert main([str(kfold_sweep), "--out", str(out)]) == 0
    console = capsys.readouterr().out.splitlines()[1:]
    assert console[0].split() == [
        "regularizer",
        "seeds",
        "accuracy",
        "%",
        "vs",
        "none",
        "(pp)",
        "p",
    ]
    assert console[1].split() == ["none", "3", "92.00", "±", "2.00"]
    assert console[2].split()[:6] == ["l1", "3", "83.00", "±", "3.00", "-9.00"]
    assert console[3].split() == "held-out test runs test acc % vs none (pp) p".split()
    assert console[4].split() == ["none", "[kfold]", "5", "81.60", "±", "4.56"]
    t = 0.04 / math.sqrt((1 / 5 + 25 / 100) * 0.0008)
    assert console[5].split() == [
        "l1",
        "[kfold]",
        "5",
        "85.60",
        "±",
        "6.69",
        "+4.00",
        f"{2 * stats.t.sf(t, 4):.3g}",
    ]

    report = (out / "report.md").read_text()
    assert "kfold (10 runs: epoch chosen on a select split" in report
    assert "reference (6 runs: epoch chosen and measured on the same val images" in report
    reference = report.split("## Best-epoch validation metrics (reference protocol: chosen and ")[1]
    reference = reference.split("## Test metrics")[0]
    assert "selection-biased" in reference.splitlines()[0]
    assert "| ECE | Brier |" in reference
    assert "| none | 90.00 ± 2.00 | 91.00 ± 2.00 | 89.00 ± 2.00 | 92.00 ± 2.00 |" in reference
    assert "| 100 | 3 | 0.0500 | 0.1300 |" in reference  # mean of the two runs that have it
    assert "| 100 | 3 | – | – |" in reference  # l1: older runs without calibration
    assert "kfold" not in reference.split("## Each regularizer")[0]
    assert "| l1 | -9.00 |" in reference
    assert "| l1 | kfold | 5-fold" in report.split("## Test metrics")[1]

    with open(out / "report.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0])[:23] == (
        "regularizer,n_seeds,n_val,precision_mean,precision_std,recall_mean,recall_std,f1_mean,"
        "f1_std,accuracy_mean,accuracy_std,accuracy_ci_low,accuracy_ci_high,diff_vs_none,"
        "diff_ci_low,diff_ci_high,p_value,test,model,lambda_l1,lambda_l2,epochs,sweep_dir"
    ).split(",")
    assert [(r["regularizer"], r["protocol"]) for r in table] == [
        ("none", "reference"),
        ("l1", "reference"),
        ("none", "kfold"),
        ("l1", "kfold"),
    ]
    assert float(table[0]["ece_mean"]) == pytest.approx(0.05) and table[1]["ece_mean"] == ""
    assert float(table[3]["accuracy_mean"]) == pytest.approx(0.856)  # test accuracy
    assert float(table[3]["selection_accuracy_mean"]) == pytest.approx(0.95)
    assert float(table[3]["p_value"]) == pytest.approx(2 * stats.t.sf(t, 4))
    assert table[3]["n_runs"] == "5" and table[3]["n_val"] == "25"


def test_summary_table_lists_test_rows_alone(kfold_sweep):
    rows, _ = summarize_tested(load(kfold_sweep))
    compare_tested(rows)
    lines = summary_table([], [], [], rows).splitlines()
    assert lines[0].startswith("held-out test") and "test acc %" in lines[0]
    assert lines[1].split()[:3] == ["none", "[kfold]", "5"]
    assert lines[2].split()[6] == "+4.00"


def test_a_holdout_lambda_search_names_the_selection_score_and_shows_the_test_score(
    tmp_path, capsys
):
    sweep = tmp_path / "search"
    scores = [(1e-4, 0.941, 0.92), (1e-3, 0.90, 0.93), (1e-2, 0.80, 0.79)]
    for trial, (l1, select, test) in enumerate(scores):
        write_tested_run(
            sweep / f"trial_{trial}",
            "l1",
            0,
            test,
            protocol="holdout",
            select_accuracy=select,
            regularizer_config={"name": "l1", "l1": l1},
        )
    assert main([str(sweep)]) == 0
    console = capsys.readouterr().out.splitlines()
    assert console[-1] == (
        "l1: λ search, 3 trials (one run per λ: trials, not seeds); best 94.10% on the "
        "selection split (test 92.00%) at λ1=0.0001, λ2=0"
    )
    report = (sweep / "report.md").read_text()
    assert "## Test metrics" not in report and "## Best-epoch" not in report
    search = report.split("## λ search (3 completed trials)")[1]
    assert (
        "selected on the selection split (holdout): 94.10%; its test accuracy: 92.00% "
        "(test images never used to choose)" in search
    )
    assert "| selection acc % | test acc % |" in search
    assert "| 1 | l1 | 0.0001 | 0 | 0 | holdout | 94.10 | 92.00 |" in search
    assert "| 2 | l1 | 0.001 | 0 | 0 | holdout | 90.00 | 93.00 |" in search


def test_a_reference_lambda_search_says_its_best_score_is_optimistic(tmp_path):
    from .test_report_seeds import fabricate

    for trial, l1 in enumerate([1e-3, 1e-2]):
        regularizer = {"name": "l1", "l1": l1}
        fabricate(tmp_path / f"t{trial}", "l1", 0, 0.8 - trial / 10, regularizer=regularizer)
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    search = report.split("## λ search (2 completed trials)")[1]
    assert "chosen on the same val images it is measured on" in search and "optimistic" in search
    assert "| 1 | l1 | 0.001 | 0 | 0 | reference | 80.00 | – |" in search


def test_l2sp_alpha_beta_are_settings_ordered_after_elasticnet(tmp_path):
    from .test_report_seeds import fabricate

    assert KNOWN_ORDER.index("l2sp") == KNOWN_ORDER.index("elasticnet") + 1
    for seed in range(2):
        fabricate(tmp_path / f"none_{seed}", "none", seed, 0.90, regularizer={"name": "none"})
        for alpha in (0.1, 1.0):
            regularizer = {"name": "l2sp", "alpha": alpha, "beta": 0.01}
            run_dir, accuracy = tmp_path / f"l2sp_{alpha}_{seed}", 0.8 + alpha / 10
            fabricate(run_dir, "l2sp", seed, accuracy, regularizer=regularizer)
        elasticnet = {"name": "elasticnet", "l1": 1e-3}
        fabricate(tmp_path / f"en_{seed}", "elasticnet", seed, 0.7, regularizer=elasticnet)
    rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(tmp_path)])
    # before: one l2sp row of 4 "seeds" pooling α=0.1 and α=1
    assert [(row["label"], row["n_seeds"]) for row in rows] == [
        ("none", 2),
        ("elasticnet", 2),
        ("l2sp, α=0.1 β=0.01", 2),
        ("l2sp, α=1 β=0.01", 2),
    ]


def test_single_seed_l2sp_alpha_variants_are_trials(tmp_path, capsys):
    from .test_report_seeds import fabricate

    for trial, alpha in enumerate([0.01, 0.1, 1.0]):
        regularizer = {"name": "l2sp", "alpha": alpha, "beta": 0.01}
        fabricate(tmp_path / f"t{trial}", "l2sp", 0, 0.7 + trial / 10, regularizer=regularizer)
    assert main([str(tmp_path)]) == 0
    console = capsys.readouterr().out.splitlines()
    assert console[-1] == (
        "l2sp: λ search, 3 trials (one run per λ: trials, not seeds); best 90.00% at α=1, β=0.01"
    )
    report = (tmp_path / "report.md").read_text()
    assert "the `l2sp` runs differ in α/β" in report
    assert "| rank | regularizer | λ1 | λ2 | α | β |" in report

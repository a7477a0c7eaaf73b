"""hymtl.report on fabricated run dirs with known numbers (no training)."""

import csv
import json
import math
from pathlib import Path

import pytest
from scipy import stats

from hymtl.report import main
from hymtl.reporting.comparisons import compare_with_none
from hymtl.reporting.reference import summarize_by_regularizer
from hymtl.reporting.runs import find_run_dirs, load_run
from hymtl.reporting.stats import mcnemar, wilson_interval

T_975_2DOF = 4.302652729911275  # t quantile 0.975 for 2 degrees of freedom
Z = 1.959964
METRIC_HEADER = "epoch,train_loss,train_penalty,train_acc,val_loss,val_acc,lr,seconds"


def write_run(
    run_dir: Path,
    regularizer: str,
    seed: int,
    accuracy: float | None = None,
    correct: list[int] | None = None,
    epochs_done: int = 3,
    error: str | None = None,
    weights: dict | None = None,
) -> Path:
    """A run dir as hymtl.train leaves it. accuracy=None and error=None: incomplete (no summary).
    With `correct` (one 0/1 per val image) the accuracy comes from it and val_predictions.csv
    is written. Macro precision/recall/F1 are accuracy - 0.02/0.01/0.03, so they are known."""
    (run_dir / ".hydra").mkdir(parents=True)
    # As Hydra saves it: interpolations left unresolved.
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"model:\n  name: resnet18\nregularizer:\n  name: {regularizer}\n  l1: ${{lambda_l1}}\n"
        f"lambda_l1: 0.03\nlambda_l2: 0.01\nepochs: 3\nseed: {seed}\n"
    )
    rows = [f"{e},0.5,0.0,0.8,{1 / e:.3f},{0.5 + 0.1 * e:.3f},0.001,1.0" for e in range(1, 4)]
    (run_dir / "metrics.csv").write_text("\n".join([METRIC_HEADER, *rows[:epochs_done]]) + "\n")
    if error is not None:
        (run_dir / "summary.json").write_text(json.dumps({"status": "failed", "error": error}))
    if correct is not None:
        accuracy = sum(correct) / len(correct)
        lines = ["path,target,pred,prob,correct"]
        lines += [f"val/img_{i}.jpg,ants,ants,0.9,{c}" for i, c in enumerate(correct)]
        (run_dir / "val_predictions.csv").write_text("\n".join(lines) + "\n")
    if accuracy is not None:
        n_val = len(correct) if correct is not None else 100
        macro = {"precision": accuracy - 0.02, "recall": accuracy - 0.01, "f1": accuracy - 0.03}
        best = {"n": n_val, "accuracy": accuracy, "macro": macro}
        summary = {"status": "completed", "n_val": n_val, "best_model": best, "final_model": best}
        summary["config"] = {
            "model": {"name": "resnet18"},
            "regularizer": {"name": regularizer, "l1": 0.03},
            "seed": seed,
            "epochs": 3,
        }
        if weights is not None:
            summary["final_weights"] = weights
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


ACCURACIES = {"none": [0.90, 0.92, 0.94], "l1": [0.80, 0.83, 0.86]}


@pytest.fixture
def three_seed_sweep(tmp_path: Path) -> Path:
    """Hydra's multirun layout, one level deeper than the sweep dir given to the report."""
    sweep = tmp_path / "multirun" / "regularization_study"
    job = 0
    for name, accuracies in ACCURACIES.items():
        for seed, accuracy in enumerate(accuracies):
            weights = {"n_weights": 10, "sum_abs": 4.0 + seed, "sum_sq": 2.0}
            weights["fraction_abs_below_0.001"] = 0.1 if name == "l1" else 0.0
            run_dir = sweep / "2026-11-28_02-53-12" / f"{job}_{name}_seed{seed}"
            write_run(run_dir, name, seed, accuracy, weights=weights)
            job += 1
    return sweep


def test_three_seeds_mean_std_t_interval_and_paired_t_test(three_seed_sweep):
    runs = [load_run(d) for d in find_run_dirs(three_seed_sweep)]
    assert len(runs) == 6 and {run.status for run in runs} == {"completed"}
    rows = summarize_by_regularizer(runs)
    assert [row["regularizer"] for row in rows] == ["none", "l1"]
    none, l1 = rows
    assert none["accuracy"] == pytest.approx((0.92, 0.02))
    assert l1["accuracy"] == pytest.approx((0.83, 0.03))
    assert l1["precision"] == pytest.approx((0.81, 0.03))
    assert l1["f1"] == pytest.approx((0.80, 0.03))
    half = T_975_2DOF * 0.02 / math.sqrt(3)
    assert none["accuracy_ci"] == pytest.approx((0.92 - half, 0.92 + half))
    assert none["ci_method"] == "t" and none["n_seeds"] == 3

    [comparison] = compare_with_none(rows)
    # paired differences l1 - none: -0.10, -0.09, -0.08 → mean -0.09, sd 0.01
    t = -0.09 / (0.01 / math.sqrt(3))
    assert comparison["diff"] == pytest.approx(-0.09)
    assert comparison["t"] == pytest.approx(t)
    assert comparison["p"] == pytest.approx(2 * stats.t.sf(abs(t), 2))
    half = T_975_2DOF * 0.01 / math.sqrt(3)
    assert comparison["ci"] == pytest.approx((-0.09 - half, -0.09 + half))
    assert comparison["test"] == "paired t-test over 3 seeds"
    assert comparison["verdict"] == "significant (p<0.05)"


def test_report_files_from_the_command_line(three_seed_sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(three_seed_sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "report.md") in printed and "l1" in printed

    with open(out / "report.csv", newline="") as handle:
        table = {row["regularizer"]: row for row in csv.DictReader(handle)}
    assert list(table) == ["none", "l1"]
    assert float(table["none"]["accuracy_mean"]) == pytest.approx(0.92)
    assert float(table["l1"]["accuracy_std"]) == pytest.approx(0.03)
    assert float(table["l1"]["recall_mean"]) == pytest.approx(0.82)
    assert float(table["l1"]["diff_vs_none"]) == pytest.approx(-0.09)
    t = -0.09 / (0.01 / math.sqrt(3))
    assert float(table["l1"]["p_value"]) == pytest.approx(2 * stats.t.sf(abs(t), 2))
    assert table["none"]["diff_vs_none"] == table["none"]["p_value"] == ""
    assert table["l1"]["n_seeds"] == "3" and table["l1"]["n_val"] == "100"

    report = (out / "report.md").read_text()
    assert "| Regularizer | Precision | Recall | F1 | Accuracy | 95% CI (accuracy) |" in report
    assert "| l1 | 81.00 ± 3.00 | 82.00 ± 3.00 | 80.00 ± 3.00 | 83.00 ± 3.00 |" in report
    assert "6 completed, 0 failed, 0 incomplete" in report
    assert f"`python -m hymtl.report {three_seed_sweep} --out {out}`" in report
    assert "t-interval over seeds" in report
    assert "| l1 | -9.00 |" in report and "significant (p<0.05)" in report
    assert "| l1 | 5 | 2 | 0.1000 | 3 |" in report  # mean Σ|w| over seeds 0, 1, 2: 4, 5, 6
    assert "![comparison](comparison.png)" in report
    png = (out / "comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_writes_into_the_first_sweep_dir_by_default(three_seed_sweep, capsys):
    assert main([str(three_seed_sweep)]) == 0
    assert {"report.md", "report.csv", "comparison.png"} <= {
        p.name for p in three_seed_sweep.iterdir()
    }


def test_single_seed_uses_wilson_and_exact_mcnemar(tmp_path, capsys):
    # 20 images: 9 both right, b=7 only none right, c=2 only l2 right, 2 both wrong
    none_correct = [1] * 9 + [1] * 7 + [0] * 2 + [0] * 2
    l2_correct = [1] * 9 + [0] * 7 + [1] * 2 + [0] * 2
    write_run(tmp_path / "sweep" / "0_none_seed0", "none", 0, correct=none_correct)
    write_run(tmp_path / "sweep" / "1_l2_seed0", "l2", 0, correct=l2_correct)
    runs = [load_run(d) for d in find_run_dirs(tmp_path / "sweep")]
    rows = summarize_by_regularizer(runs)
    assert rows[0]["accuracy"] == (0.80, None) and rows[0]["ci_method"] == "wilson"

    p, n = 16 / 20, 20  # Wilson by hand
    center = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    assert rows[0]["accuracy_ci"] == pytest.approx((center - half, center + half))
    assert wilson_interval(16, 20) == pytest.approx((center - half, center + half))

    [comparison] = compare_with_none(rows)
    exact_p = 2 * sum(math.comb(9, k) for k in range(3)) / 2**9  # two-sided, min(b, c) = 2
    assert comparison["p"] == pytest.approx(exact_p) == pytest.approx(0.1796875)
    assert (comparison["b"], comparison["c"]) == (7, 2)
    d, se = (2 - 7) / 20, math.sqrt(7 + 2 - (2 - 7) ** 2 / 20) / 20
    assert comparison["diff"] == pytest.approx(-0.25)
    assert comparison["ci"] == pytest.approx((d - Z * se, d + Z * se))
    assert comparison["verdict"] == "not significant"

    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "exact McNemar (b=7, c=2, 20 images)" in report
    assert "Wilson score interval" in report
    assert "## Final weights" not in report  # no run has final_weights


def test_mcnemar_without_discordant_pairs_has_p_one():
    result = mcnemar([1, 0, 1], [1, 0, 1])
    assert result["p"] == 1.0 and result["diff"] == 0.0 and result["ci"] == (0.0, 0.0)


def test_identical_paired_differences_are_not_passed_to_scipy(tmp_path):
    # l2 - none is -0.05 for both seeds (up to float rounding): a t-test would divide by zero
    for seed, (acc_none, acc_l2) in enumerate([(0.90, 0.85), (0.92, 0.87)]):
        write_run(tmp_path / f"{seed}_none", "none", seed, acc_none)
        write_run(tmp_path / f"{seed}_l2", "l2", seed, acc_l2)
    rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(tmp_path)])
    [comparison] = compare_with_none(rows)
    assert comparison["diff"] == pytest.approx(-0.05)
    assert comparison["ci"] == pytest.approx((-0.05, -0.05))
    assert comparison["p"] is None and comparison["p_text"] == "n/a (no variance)"


def test_failed_and_incomplete_runs_are_listed_not_dropped(three_seed_sweep, tmp_path, capsys):
    write_run(three_seed_sweep / "x" / "6_l2_seed0", "l2", 0, error="data.root=/nope is missing")
    write_run(three_seed_sweep / "x" / "7_elasticnet_seed0", "elasticnet", 0, epochs_done=2)
    runs = {run.path.name: run for run in map(load_run, find_run_dirs(three_seed_sweep))}
    assert runs["6_l2_seed0"].status == "failed"
    assert runs["6_l2_seed0"].regularizer == "l2"  # from .hydra/config.yaml
    assert runs["6_l2_seed0"].config["regularizer"]["l1"] == 0.03  # interpolation resolved
    assert runs["7_elasticnet_seed0"].status == "incomplete"
    assert len(runs["7_elasticnet_seed0"].metrics) == 2

    assert main([str(three_seed_sweep), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "6 completed, 1 failed, 1 incomplete" in report
    failed = report.split("## Failed runs (1)")[1].split("##")[0]
    assert "6_l2_seed0`: data.root=/nope is missing" in failed
    incomplete = report.split("## Incomplete runs (1")[1].split("##")[0]
    assert "7_elasticnet_seed0`: 2/3 epochs done" in incomplete
    table = report.split("## Best-epoch")[1].split("##")[0]
    assert "| l1 |" in table and "| l2 |" not in table and "| elasticnet |" not in table
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 10_000


def test_attempts_that_failed_before_training_are_not_counted_as_runs(three_seed_sweep, tmp_path):
    attempt = write_run(three_seed_sweep / "y" / "0_l2_seed0", "l2", 0, error="no data.root")
    (attempt / "metrics.csv").unlink()  # stopped at set-up: no epoch
    (attempt / ".hydra" / "config.yaml").write_text("model:\n  name: resnet50\nepochs: 90\n")
    assert main([str(three_seed_sweep), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "6 completed, 0 failed, 0 incomplete; 1 more failed before training (not runs)" in report
    assert "- model: resnet18; epochs: 3" in report  # the attempt's model and epochs left out
    assert "## Failed runs (0)" in report
    attempts = report.split("## Failed before training (1: no epoch trained)")[1].split("##")[0]
    assert "0_l2_seed0`: no data.root" in attempts


@pytest.mark.parametrize("make_input", ["missing", "empty"])
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, make_input):
    path = tmp_path / "nothing_here"
    if make_input == "empty":
        path.mkdir()
    assert main([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hymtl-report: error: ")
    assert str(path) in lines[0]


def test_one_shared_seed_without_val_predictions_is_reported_untested(three_seed_sweep):
    write_run(three_seed_sweep / "6_l2_seed1", "l2", 1, 0.85)
    rows = summarize_by_regularizer([load_run(d) for d in find_run_dirs(three_seed_sweep)])
    l2 = next(c for c in compare_with_none(rows) if c["regularizer"] == "l2")
    assert l2["diff"] == pytest.approx(0.85 - 0.92)  # against none's seed 1 only
    assert l2["p"] is None and l2["ci"] is None and l2["verdict"] == "not tested"
    assert l2["test"].startswith("no test")


def test_reports_name_folders_below_the_working_directory_relatively(
    three_seed_sweep, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert main([str(three_seed_sweep.resolve()), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    relative = three_seed_sweep.resolve().relative_to(tmp_path.resolve())
    assert f"`python -m hymtl.report {relative} --out out`" in report
    assert str(tmp_path) not in report

"""The comparison scripts in scripts/ on hand-made run dirs: numbers that could be wrong."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def write_summary(folder: Path, seed: int, accuracy: float, regularizer="none", status="completed"):
    folder.mkdir(parents=True)
    summary = {"status": status, "best_val_acc": accuracy,
               "config": {"seed": seed, "regularizer": {"name": regularizer}}}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))


def test_paired_seeds_pairs_by_seed_and_tests_the_differences(tmp_path):
    for seed, (fp32, bf16) in enumerate([(0.90, 0.92), (0.80, 0.83), (0.85, 0.86)]):
        write_summary(tmp_path / "a" / f"run{seed}", seed, fp32)
        write_summary(tmp_path / "b" / f"run{2 - seed}", seed, bf16)  # order must not matter
    write_summary(tmp_path / "b" / "l1", 0, 0.10, regularizer="l1")  # filtered out
    write_summary(tmp_path / "b" / "failed", 7, 0.0, status="failed")  # not counted
    result = subprocess.run(
        [sys.executable, SCRIPTS / "paired_seeds.py", "--a", tmp_path / "a", "--b", tmp_path / "b",
         "--regularizer", "none"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    # differences +2, +3, +1 points: mean 2, sd 1, t = 2/(1/√3) = 3.46 on 2 df -> p = 0.0742
    assert "| 1 | 80.00 | 83.00 | +3.00 |" in result.stdout
    assert "| mean ± sd | 85.00 ± 5.00 | 87.00 ± 4.58 | +2.00" in result.stdout
    p = float(result.stdout.split("p = ")[1].split(";")[0])
    assert p == pytest.approx(0.0742, abs=5e-4)


def test_paired_seeds_compares_two_regularizers_of_one_sweep(tmp_path):
    for seed, (none, l1) in enumerate([(0.90, 0.50), (0.80, 0.60)]):
        write_summary(tmp_path / f"none{seed}", seed, none)
        write_summary(tmp_path / f"l1{seed}", seed, l1, regularizer="l1")
    result = subprocess.run(
        [sys.executable, SCRIPTS / "paired_seeds.py", "--a", tmp_path, "--b", tmp_path,
         "--a-regularizer", "none", "--b-regularizer", "l1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "| mean ± sd | 85.00 ± 7.07 | 55.00 ± 7.07 | -30.00" in result.stdout


def test_step_variants_times_each_variant_and_refuses_unknown_ones(tmp_path):
    from hymtl.toydata import make_toy_image_folder

    data = make_toy_image_folder(tmp_path / "toy", train_per_class=4, val_per_class=2)
    run = lambda variants: subprocess.run(  # noqa: E731
        [sys.executable, str(SCRIPTS / "step_variants.py"), "--data", str(data),
         "--variants", variants, "--rounds", "2", "--steps", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    result = run("base,fused_sgd")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"base", "fused_sgd"}
    assert float(rows["base"][2]) == 1.0  # the first variant is the yardstick
    assert float(rows["fused_sgd"][1]) > 0 and len(rows["fused_sgd"]) == 3 + 2  # 2 rounds
    unknown = run("base,turbo")
    assert unknown.returncode == 2 and "unknown ['turbo']" in unknown.stderr

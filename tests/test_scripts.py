"""The comparison scripts in scripts/ on hand-made run dirs: numbers that could be wrong."""

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hymtl.stats import p_text

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    """scripts/NAME.py as a module (scripts/ is no package), to call its functions."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paired_seeds(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, SCRIPTS / "paired_seeds.py", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True)


def write_summary(folder: Path, seed: int, accuracy: float, regularizer="none", status="completed"):
    folder.mkdir(parents=True)
    config = {"seed": seed, "regularizer": {"name": regularizer}}
    summary = {"status": status, "best_val_acc": accuracy, "config": config}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_paired_seeds_pairs_by_seed_and_tests_the_differences(tmp_path):
    for seed, (fp32, bf16) in enumerate([(0.90, 0.92), (0.80, 0.83), (0.85, 0.86)]):
        write_summary(tmp_path / "a" / f"run{seed}", seed, fp32)
        write_summary(tmp_path / "b" / f"run{2 - seed}", seed, bf16)  # order must not matter
    write_summary(tmp_path / "b" / "l1", 0, 0.10, regularizer="l1")  # filtered out
    write_summary(tmp_path / "b" / "failed", 7, 0.0, status="failed")  # not counted
    result = subprocess.run(
        [
            sys.executable,
            SCRIPTS / "paired_seeds.py",
            "--a",
            tmp_path / "a",
            "--b",
            tmp_path / "b",
            "--regularizer",
            "none",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
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
        [
            sys.executable,
            SCRIPTS / "paired_seeds.py",
            "--a",
            tmp_path,
            "--b",
            tmp_path,
            "--a-regularizer",
            "none",
            "--b-regularizer",
            "l1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| mean ± sd | 85.00 ± 7.07 | 55.00 ± 7.07 | -30.00" in result.stdout


def test_step_variants_times_each_variant_and_refuses_unknown_ones(tmp_path):
    from hymtl.toydata import make_toy_image_folder

    data = make_toy_image_folder(tmp_path / "toy", train_per_class=4, val_per_class=2)
    run = lambda variants: subprocess.run(  # noqa: E731
        [
            sys.executable,
            str(SCRIPTS / "step_variants.py"),
            "--data",
            str(data),
            "--variants",
            variants,
            "--rounds",
            "2",
            "--steps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = run("base,fused_sgd")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"base", "fused_sgd"}
    assert float(rows["base"][2]) == 1.0  # the first variant is the yardstick
    assert float(rows["fused_sgd"][1]) > 0 and len(rows["fused_sgd"]) == 3 + 2  # 2 rounds
    unknown = run("base,turbo")
    assert unknown.returncode == 2 and "unknown ['turbo']" in unknown.stderr


def test_paired_seeds_without_regularizer_on_a_four_regularizer_sweep_names_the_flags(tmp_path):
    for job, name in enumerate(["none", "l1", "l2", "elasticnet"]):
        for seed in (0, 1):
            write_summary(tmp_path / f"{job}_{name}_seed{seed}", seed, 0.9, regularizer=name)
    result = paired_seeds("--a", tmp_path, "--b", tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    [message] = result.stderr.splitlines()
    assert message.startswith("paired_seeds: seed 0 twice in --a (")
    assert "regularizers elasticnet, l1, l2, none" in message
    assert "--regularizer NAME, or one per side with --a-regularizer/--b-regularizer" in message


def test_paired_seeds_reports_identical_differences_as_hymtl_report_does(tmp_path):
    # b - a is +2 points for every seed: no variance, so no t-test (report.py: the same text)
    for seed, accuracy in enumerate([0.80, 0.90]):
        write_summary(tmp_path / "a" / str(seed), seed, accuracy)
        write_summary(tmp_path / "b" / str(seed), seed, accuracy + 0.02)
    result = paired_seeds("--a", tmp_path / "a", "--b", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert "| mean ± sd | 85.00 ± 7.07 | 87.00 ± 7.07 | +2.00 (95% CI +2.00 to +2.00) |" in (
        result.stdout
    )
    assert "2 seeds; paired t-test p = n/a (no variance);" in result.stdout  # was "p = 1.000"
    assert p_text(None) == "n/a (no variance)"  # what hymtl.report prints for the same case


def test_time_sweeps_echoes_a_command_line_that_can_be_pasted(tmp_path, monkeypatch, capsys):
    time_sweeps = load_script("time_sweeps")
    ran = []

    def fake_run(command, **kwargs):
        ran.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(time_sweeps.subprocess, "run", fake_run)
    sweep_dir = tmp_path / "with space"
    time_sweeps.run_sweep(["hydra/launcher=joblib"], ["data.root=/my data"], sweep_dir)
    [line] = capsys.readouterr().out.splitlines()
    assert line == (
        "$ python -m hymtl.train -m hydra/launcher=joblib 'data.root=/my data' "
        f"'hydra.sweep.dir={sweep_dir}'"
    )
    # pasted into a shell, the line runs exactly what the script ran
    [command] = ran
    assert shlex.split(line.removeprefix("$ ")) == ["python", *command[1:]]
    assert command[0] == sys.executable


@pytest.mark.parametrize("dest_exists", [False, True])
def test_download_data_failure_leaves_no_folder_behind(tmp_path, capsys, dest_exists):
    download_data = load_script("download_data")
    dest = tmp_path / "new" / "data"
    if dest_exists:
        dest.mkdir(parents=True)
    missing = (tmp_path / "missing.zip").as_uri()  # fails like an offline download, no network
    assert download_data.main(["--dest", str(dest), "--url", missing]) == 1
    assert "could not download" in capsys.readouterr().err
    if dest_exists:  # not ours to remove, and nothing left in it
        assert dest.is_dir() and list(dest.iterdir()) == []
    else:
        assert not (tmp_path / "new").exists()


def test_download_data_refuses_a_file_that_is_no_zip_and_leaves_nothing(tmp_path, capsys):
    download_data = load_script("download_data")
    not_a_zip = tmp_path / "page.zip"
    not_a_zip.write_text("<html>captive portal</html>")
    dest = tmp_path / "data"
    assert download_data.main(["--dest", str(dest), "--url", not_a_zip.as_uri()]) == 1
    assert "is not a usable zip" in capsys.readouterr().err
    assert not dest.exists()

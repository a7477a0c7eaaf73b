"""A run directory belongs to one run: never mixed, overwritten or falsely "completed"."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hymtl.train
from hymtl import UserError
from hymtl.report import find_run_dirs
from hymtl.run.artifacts import read_metrics
from hymtl.run.resume import NothingToResume
from hymtl.run.rundir import RunLock, is_locked, run_state
from hymtl.train import NonFiniteLoss, RunInterrupted, train

from .conftest import TINY, compose_config, run_cli


def base(image_root, epochs=1):
    return TINY + ["data=imagefolder", f"data.root={image_root}", f"epochs={epochs}"]


def snapshot(folder: Path) -> dict:
    """Every file below `folder` (hidden ones included) with a hash of its content."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != ".hymtl.lock"
    }


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("hymtl:")]


@pytest.fixture
def finished_run(image_root, tmp_path):
    """A completed 1-epoch run, made through the CLI so it has .hydra/ and train.log too."""
    run_dir = tmp_path / "run"
    result = run_cli([*base(image_root), f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_a_second_run_into_the_same_dir_is_refused_and_changes_nothing(
    image_root, tmp_path, finished_run
):
    before = snapshot(finished_run)
    for extra in ([], ["batch_size=100"], ["optimizer.lr=0.5"]):
        result = run_cli([*base(image_root), *extra, f"hydra.run.dir={finished_run}"], tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        (line,) = error_lines(result.stderr)
        assert f"{finished_run} already holds a completed run" in line
        assert "resume=" in line and "hydra.run.dir=" in line and "overwrite=true" in line
    assert snapshot(finished_run) == before  # not even .hydra/ or train.log


@pytest.mark.slow
def test_overwrite_moves_the_old_run_aside_and_report_counts_one(
    image_root, tmp_path, finished_run
):
    before = snapshot(finished_run)
    result = run_cli(
        [*base(image_root), "overwrite=true", f"hydra.run.dir={finished_run}"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (replaced,) = finished_run.glob("replaced-*")
    assert snapshot(replaced) == before  # the whole earlier run, byte for byte
    assert json.loads((finished_run / "summary.json").read_text())["status"] == "completed"
    assert find_run_dirs(tmp_path) == [finished_run]  # the moved-aside run is not counted


@pytest.mark.slow
def test_a_refused_resume_creates_and_changes_nothing(tmp_path, finished_run):
    before = snapshot(finished_run)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "multirun.yaml").write_text("{}\n")
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "last.pt").write_bytes(b"not a checkpoint")
    cases = {
        f"resume={tmp_path}/missing": "does not exist",
        f"resume={tmp_path}/sweep": "is a sweep directory",
        f"resume={tmp_path}": "holds runs in its sub-folders",
        f"resume={tmp_path}/torn": "last.pt cannot be read",
    }
    for override, message in cases.items():
        result = run_cli([override], tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        (line,) = error_lines(result.stderr)
        assert message in line
    assert not (tmp_path / "missing").exists()
    assert not (tmp_path / "sweep" / "resumed").exists()
    assert sorted(p.name for p in (tmp_path / "torn").iterdir()) == ["last.pt"]

    result = run_cli([f"resume={finished_run}", "optimizer.lr=0.1", "epochs=3"], tmp_path)
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert "optimizer.lr=0.1 (the run has 0.001)" in line and "epochs" not in line.split(":")[-1]
    result = run_cli([f"resume={finished_run}"], tmp_path)  # completed, nothing to extend
    assert result.returncode == 0 and "nothing to do" in result.stderr
    assert snapshot(finished_run) == before
    assert not (finished_run / "resumed").exists()


@pytest.mark.slow
def test_resume_with_more_epochs_extends_a_completed_run(image_root, tmp_path):
    run_dir = tmp_path / "run"
    train(compose_config(base(image_root, epochs=1)), run_dir)
    with pytest.raises(NothingToResume):
        train(compose_config([f"resume={run_dir}"]), None, [])
    with pytest.raises(UserError, match="resume can extend a run, not shorten it"):
        train(compose_config([f"resume={run_dir}", "epochs=0"]), None, ["epochs=0"])
    summary = train(compose_config([f"resume={run_dir}", "epochs=2"]), None, ["epochs=2"])
    assert summary["status"] == "completed" and summary["epochs"] == 2
    assert [row["epoch"] for row in read_metrics(run_dir / "metrics.csv")] == [1, 2]
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 2
    (replaced,) = run_dir.glob("replaced-*")  # the 1-epoch run's final artifacts, kept
    assert json.loads((replaced / "summary.json").read_text())["epochs"] == 1


@pytest.mark.slow
def test_non_finite_weights_fail_the_run_and_are_never_saved(image_root, tmp_path, monkeypatch):
    """One step per epoch with lr=nan: the loss of that step is finite, the weights after it
    are not. (The config check refuses lr=nan; bypassed here to reach the loop's guard.)"""
    monkeypatch.setattr("hymtl.run.lifecycle.check_config", lambda cfg: None)
    cfg = compose_config(base(image_root) + ["optimizer.lr=nan", "batch_size=24"])
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match="weights became non-finite .* in epoch 1"):
        train(cfg, run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert not (run_dir / "best.pt").exists()
    checkpoint = torch.load(run_dir / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())


@pytest.mark.slow
def test_interrupt_while_writing_artifacts_is_not_completed(image_root, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    real_write_plots = hymtl.train.write_plots
    monkeypatch.setattr(hymtl.train, "write_plots", interrupt)
    with pytest.raises(RunInterrupted, match="final artifacts; last.pt holds epoch 1"):
        train(compose_config(base(image_root)), run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(hymtl.train, "write_plots", real_write_plots)
    summary = train(compose_config([f"resume={run_dir}"]), None, [])
    assert summary["status"] == "completed"
    assert (run_dir / "curves.png").stat().st_size > 0


def test_interrupt_during_start_up_is_one_line_and_a_status(image_root, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hymtl.train, "build_parts", interrupt)
    run_dir = tmp_path / "run"
    with pytest.raises(RunInterrupted, match="start-up, before any training; nothing to resume"):
        train(compose_config(base(image_root)), run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert run_state(run_dir).describe() == "an interrupted run, nothing trained yet"


def test_a_run_dir_in_use_is_locked(tmp_path):
    lock = RunLock(tmp_path)
    assert is_locked(tmp_path)
    with pytest.raises(UserError, match="being written by another running hymtl process"):
        RunLock(tmp_path)
    lock.release()
    assert not is_locked(tmp_path)


@pytest.mark.slow
def test_config_errors_are_refused_before_any_directory_is_made(tmp_path):
    overrides = ("+epoch=3", "seed=-1", "threads=-1", "lambda_l1=inf", "+optimizer.lrr=1")
    overrides += ("epoch=3", "model=resnet999", "epochs=many")  # Hydra's own composition errors
    for override in overrides:
        run_dir = tmp_path / "run"
        result = run_cli([override, f"hydra.run.dir={run_dir}"], tmp_path)
        assert result.returncode == 2, (override, result.stderr[-2000:])
        assert len(error_lines(result.stderr)) == 1 and "Traceback" not in result.stderr
        assert not run_dir.exists()


def comparable_rows(run_dir):
    return [
        {k: v for k, v in row.items() if k != "seconds"}
        for row in read_metrics(run_dir / "metrics.csv")
    ]


@pytest.mark.slow
def test_a_sweep_rerun_keeps_resumes_and_restarts_its_jobs(image_root, tmp_path):
    sweep = tmp_path / "sweep"
    settings = [*base(image_root, epochs=2), "deterministic=true"]
    command = ["-m", *settings, "regularizer=none,l1,l2", f"hydra.sweep.dir={sweep}"]
    # First invocation: stopped (SIGTERM) once job 1 has finished its first epoch.
    process = subprocess.Popen(
        [sys.executable, "-m", "hymtl.train", *command],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    metrics = sweep / "1" / "metrics.csv"
    while time.time() < deadline and not (
        metrics.exists() and len(metrics.read_text().splitlines()) >= 2
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    assert json.loads((sweep / "1" / "summary.json").read_text())["status"] == "interrupted"
    assert not (sweep / "2").exists()
    kept = snapshot(sweep / "0")

    again = run_cli(command, tmp_path)  # the same command: continue the study
    assert again.returncode == 0, again.stderr[-3000:]
    assert "/0: completed earlier with the same config; kept" in again.stdout + again.stderr
    assert snapshot(sweep / "0")["summary.json"] == kept["summary.json"]
    reference = tmp_path / "reference"
    train(compose_config([*settings, "regularizer=l1"]), reference)
    assert comparable_rows(sweep / "1") == comparable_rows(reference)  # resumed exactly
    assert json.loads((sweep / "1" / "summary.json").read_text())["status"] == "completed"

    (sweep / "2" / "summary.json").write_text('{"status": "failed", "error": "boom"}\n')
    third = run_cli(command, tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "a failed job, started again" in third.stdout + third.stderr
    (replaced,) = (sweep / "2").glob("replaced-*")
    assert json.loads((replaced / "summary.json").read_text())["error"] == "boom"
    assert json.loads((sweep / "2" / "summary.json").read_text())["status"] == "completed"
    assert len(find_run_dirs(sweep)) == 3  # each job counted once

    before = snapshot(sweep)
    changed = ["-m", *settings, "regularizer=none,l1,l2", "lambda_l1=0.5"]
    other = run_cli([*changed, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert other.returncode == 2
    (line,) = error_lines(other.stderr)
    assert "holds a run with another config (lambda_l1: 0.03 -> 0.5" in line
    assert snapshot(sweep) == before


def test_composition_errors_are_one_line_with_the_near_miss():
    from hymtl.config.compose import override_problem

    assert override_problem(["epoch=3"]).startswith("unknown config key epoch (did you mean epochs")
    assert override_problem(["optimizer.lrr=1"]).startswith(
        "unknown config key optimizer.lrr (did you mean optimizer.lr?)"
    )
    assert override_problem(["model=resnet999"]) == (
        "model=resnet999 is not an option; model options: mobilenet_v2, resnet18, resnet50"
    )
    assert "could not be converted to Integer" in override_problem(["epochs=many"])
    assert override_problem(["-m", "epoch=3"]) is None  # sweeps: checked job by job
    assert override_problem(["regularizer=l1", "lambda_l1=0.05"]) is None


def test_a_file_is_not_a_run_dir(tmp_path):
    from hymtl.run.rundir import claim_for_new_run

    (tmp_path / "run").write_text("notes")
    with pytest.raises(UserError, match="is a file, not a run directory"):
        claim_for_new_run(tmp_path / "run", overwrite=True)
    assert (tmp_path / "run").read_text() == "notes"


@pytest.mark.slow
def test_a_last_training_batch_of_one_image_is_skipped(tmp_path):
    """25 images at batch 4 leave one image: BatchNorm cannot train on it (32-px images end
    at 1x1 feature maps); the epoch skips it instead of crashing."""
    from hymtl.data.toydata import make_toy_image_folder, write_class_images

    root = make_toy_image_folder(tmp_path / "images")
    write_class_images(root / "extra", classes=("ants",), per_class=1, seed=9)
    (root / "extra" / "ants" / "ants_0.jpg").rename(root / "train" / "ants" / "extra.jpg")
    summary = train(compose_config(base(root)), tmp_path / "run")
    assert summary["status"] == "completed" and summary["n_train"] == 25


@pytest.mark.slow
def test_sigterm_during_start_up_is_one_line_and_exit_130(image_root, tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "hymtl.train", *base(image_root), f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / ".hydra").exists():  # Hydra's files: the
        time.sleep(0.01)  # first thing on disk; training is seconds away
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    (line,) = error_lines(stderr)
    assert "nothing to resume" in line or "resume=" in line
    assert "Traceback" not in stderr


def test_a_run_from_before_a_key_existed_resumes_with_its_default(tmp_path):
    from hymtl.config.compose import to_plain_dict
    from hymtl.run.resume import resumed_config

    composed = compose_config(["epochs=3"])
    older = to_plain_dict(composed)
    del older["overwrite"]  # a key this run's hymtl did not have yet
    resumed = resumed_config({"config": older, "epoch": 1}, tmp_path, [], composed)
    assert resumed.overwrite is False and resumed.epochs == 3
    assert resumed.resume == str(tmp_path)


def test_one_image_per_batchnorm_channel_is_one_line(image_root, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match="BatchNorm cannot train on one value per channel"):
        train(compose_config(base(image_root) + ["batch_size=1"]), run_dir)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"

"""Resume, interruption, failing sweep jobs: nothing lost, nothing cryptic."""

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from hymtl import UserError
from hymtl.train import NonFiniteLoss, RunInterrupted, train

from .conftest import TINY, compose_config, run_cli

# Runs compared bit for bit: one thread, whatever else loads the machine (threads=auto may
# choose another count for each run, and sums in another order).
SHORT = TINY + ["data=imagefolder", "epochs=3", "deterministic=true", "optimizer.lr=0.01"]
SHORT += ["threads=1"]


def comparable_rows(run_dir):
    """metrics.csv without the wall-clock column."""
    with open(run_dir / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def comparable_summary(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    keys = ("best_epoch", "best_val_acc", "best_model", "final_model", "final_weights")
    return {key: summary[key] for key in keys}


def assert_same_run(resumed_dir, reference_dir):
    assert comparable_rows(resumed_dir) == comparable_rows(reference_dir)
    assert comparable_summary(resumed_dir) == comparable_summary(reference_dir)
    resumed = torch.load(resumed_dir / "last.pt", weights_only=True)["model"]
    reference = torch.load(reference_dir / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


@pytest.fixture
def reference_run(image_root, tmp_path):
    run_dir = tmp_path / "reference"
    train(compose_config(SHORT + [f"data.root={image_root}"]), run_dir)
    return run_dir


@pytest.mark.slow
def test_interrupted_run_resumes_exactly(image_root, tmp_path, reference_run, monkeypatch):
    import hymtl.train

    real_evaluate, calls = hymtl.train.evaluate, []

    def evaluate_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C during epoch 2's evaluation
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    run_dir = tmp_path / "interrupted"
    monkeypatch.setattr(hymtl.train, "evaluate", evaluate_then_interrupt)
    with pytest.raises(RunInterrupted, match=f"epoch 2; last.pt holds epoch 1.*resume={run_dir}"):
        train(compose_config(SHORT + [f"data.root={image_root}"]), run_dir)
    monkeypatch.setattr(hymtl.train, "evaluate", real_evaluate)
    assert len(comparable_rows(run_dir)) == 1

    train(compose_config([f"resume={run_dir}"]), None)  # config comes from last.pt
    assert_same_run(run_dir, reference_run)


@pytest.mark.slow
def test_kill_between_metrics_row_and_checkpoint(image_root, tmp_path, reference_run, monkeypatch):
    """Epoch 2 wrote its metrics row but died before last.pt: the row is redone, not doubled.
    (last.pt is written while epoch 3 trains; its failure ends the run before epoch 3's row.)"""
    import hymtl.run.checkpoint_writer as writer

    real_save, saves = writer.save_checkpoint, []

    def save_then_die(path, checkpoint):
        if path.name == "last.pt" and checkpoint["epoch"] == 2:
            raise KeyboardInterrupt
        saves.append(checkpoint["epoch"])
        real_save(path, checkpoint)

    run_dir = tmp_path / "killed"
    monkeypatch.setattr(writer, "save_checkpoint", save_then_die)
    with pytest.raises(RunInterrupted, match="last.pt holds epoch 1"):
        train(compose_config(SHORT + [f"data.root={image_root}"]), run_dir)
    monkeypatch.setattr(writer, "save_checkpoint", real_save)
    assert len(comparable_rows(run_dir)) == 2  # row 2 is on disk, last.pt says epoch 1
    train(compose_config([f"resume={run_dir}"]), None)
    assert_same_run(run_dir, reference_run)


def test_batch_larger_than_the_training_set(image_root, tmp_path):
    cfg = compose_config(SHORT + [f"data.root={image_root}", "batch_size=100"])
    with pytest.raises(UserError, match="batch_size=100 is larger than the 24 training images"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()  # caught before any training work


def test_resume_needs_a_run_dir(tmp_path):
    with pytest.raises(UserError, match="no last.pt there"):
        train(compose_config([f"resume={tmp_path}"]), None)


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(image_root, tmp_path):
    cfg = compose_config(SHORT + [f"data.root={image_root}", "optimizer.lr=1e30"])
    with pytest.raises(NonFiniteLoss, match="loss became .*last good checkpoint kept"):
        train(cfg, tmp_path / "run")
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert all(
        torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point()
    )


@pytest.mark.slow
def test_a_failing_sweep_job_does_not_stop_the_others(image_root, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            "-m",
            f"data.root={tmp_path}/missing,{image_root}",
            "epochs=1",
            f"hydra.sweep.dir={sweep}",
            *TINY,
        ],
        tmp_path,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "1 job(s) of the sweep failed" in result.stderr
    assert "Traceback" not in result.stderr
    failed = json.loads((sweep / "0" / "summary.json").read_text())
    assert failed == {"status": "failed", "error": failed["error"]}
    assert "does not exist" in failed["error"]
    assert json.loads((sweep / "1" / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_sweep_that_failed_ends_with_the_command_that_continues_it(image_root, tmp_path):
    """The default sweep dir has a timestamp: the same command again would start a new sweep.
    The printed command pins it; run after the fix, it keeps the completed job."""
    missing = tmp_path / "data later"
    result = run_cli(["-m", f"data.root={missing},{image_root}", "epochs=1", *TINY], tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    [line] = [line for line in result.stderr.splitlines() if "continue the sweep" in line]
    command = shlex.split(line.split("(completed jobs are kept): ")[1])
    [sweep] = (tmp_path / "multirun").glob("*/*")
    assert command[:4] == ["python", "-m", "hymtl.train", "-m"]
    assert command[-1] == f"hydra.sweep.dir='{sweep}'"
    kept = (sweep / "1" / "summary.json").stat().st_mtime_ns
    shutil.copytree(image_root, missing)
    again = subprocess.run(
        [sys.executable, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((sweep / "0" / "summary.json").read_text())["status"] == "completed"
    assert (sweep / "1" / "summary.json").stat().st_mtime_ns == kept
    assert list((tmp_path / "multirun").glob("*/*")) == [sweep]


@pytest.mark.slow
def test_sigterm_leaves_a_resumable_run_and_one_line(image_root, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hymtl.train",
            "data=imagefolder",
            f"data.root={image_root}",
            "epochs=200",
            f"hydra.run.dir={run_dir}",
            *TINY,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "metrics.csv").exists():
        time.sleep(0.2)
    while time.time() < deadline and len(comparable_rows(run_dir)) < 1:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("hymtl:")]
    assert len(lines) == 1 and f"resume={run_dir}" in lines[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    done = torch.load(run_dir / "last.pt", weights_only=True)["epoch"]
    assert len(comparable_rows(run_dir)) in (done, done + 1)  # a row past last.pt is redone


def test_a_killed_data_loading_worker_is_one_line_with_the_way_on(
    image_root, tmp_path, monkeypatch
):
    """torch's RuntimeError for a worker the OOM killer took: the run ends `failed` with one
    line naming the cause and the resume command, and last.pt of the epoch before stays."""
    import hymtl.train

    real_train_one_epoch, calls = hymtl.train.train_one_epoch, []

    def killed_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
        return real_train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(hymtl.train, "train_one_epoch", killed_in_epoch_2)
    run_dir = tmp_path / "run"
    with pytest.raises(UserError) as raised:
        train(compose_config(SHORT + [f"data.root={image_root}"]), run_dir)
    message = str(raised.value)
    assert "pid 4242" in message and "lower num_workers= or batch_size=" in message
    assert f"resume={run_dir}" in message and "\n" not in message
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "data-loading process died" in summary["error"]
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1

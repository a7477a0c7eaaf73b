"""Sweeps through Hydra's launcher and sweeper plugins (extras `sweep` and `search`)."""

import json
import os
import subprocess
import sys

import pytest

from hymtl.report import main as report_main

from .conftest import TINY


def run_sweep(args, cwd, timeout=900):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "hymtl.train", "-m", *TINY, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def completed_summaries(sweep_dir):
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("**/summary.json"))]
    assert summaries and all(s["status"] == "completed" for s in summaries)
    return summaries


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_with_split_threads(image_root, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    result = run_sweep(
        [
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "regularizer=none,l1",
            # DataLoader workers inside loky jobs, as on CUDA (where num_workers defaults to 8):
            # they once failed to start there ("'Process' object has no attribute 'env'").
            "num_workers=1",
            "data=imagefolder",
            f"data.root={image_root}",
            "epochs=1",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = completed_summaries(sweep)
    assert sorted(s["config"]["regularizer"]["name"] for s in summaries) == ["l1", "none"]
    cores = os.cpu_count() or 1
    assert all(s["threads"] == max(1, cores // 2) for s in summaries)
    # Two jobs print at once: every epoch line says whose it is.
    epoch_lines = [line for line in result.stdout.splitlines() if " epoch 1/1 " in line]
    assert sorted(line.split(" - ")[1].split("]")[0] for line in epoch_lines) == [
        "[job 0 none seed=0",
        "[job 1 l1 seed=0",
    ]


@pytest.mark.slow
def test_submitit_local_launcher(image_root, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    result = run_sweep(
        [
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "regularizer=l2,elasticnet",
            "data=imagefolder",
            f"data.root={image_root}",
            "epochs=1",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(s["config"]["regularizer"]["name"] for s in completed_summaries(sweep))
    assert names == ["elasticnet", "l2"]


@pytest.mark.slow
def test_two_trial_lambda_search_and_its_report(image_root, tmp_path, capsys):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "search"
    result = run_sweep(
        [
            "hparams_search=lambda_search",
            "hydra.sweeper.n_trials=2",
            "data=imagefolder",
            f"data.root={image_root}",
            "epochs=1",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert "setup plugin" not in console and "\x1b[" not in console  # no alembic, no ANSI
    assert (sweep / "optuna.db").is_file()
    assert "best_params" in (sweep / "optimization_results.yaml").read_text()
    lambdas = {
        (s["config"]["lambda_l1"], s["config"]["lambda_l2"]) for s in completed_summaries(sweep)
    }
    assert len(lambdas) == 2 and all(1e-6 <= v <= 1e-1 for pair in lambdas for v in pair)
    assert report_main([str(sweep)]) == 0
    report = (sweep / "report.md").read_text()
    assert "## λ search (2 completed trials)" in report and "Optuna's result" in report
    assert "the `elasticnet` runs differ in λ (a λ search)" in report
    assert (sweep / "search.png").stat().st_size > 1000

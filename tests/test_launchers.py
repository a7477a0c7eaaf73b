"""Launchers other than the basic one: the same end-of-sweep lines, cores split between jobs
that run side by side, and one line where the launcher cannot run here."""

import json
import os
import shutil

import pytest

from .conftest import TINY, run_cli


@pytest.mark.skipif(shutil.which("srun") is not None, reason="SLURM is installed here")
def test_slurm_without_slurm_is_one_line_and_leaves_no_sweep_dir(image_root, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["-m", "hydra/launcher=slurm", f"data.root={image_root}", f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "hymtl: error: hydra/launcher=slurm needs SLURM (no srun on this machine): run the "
        "sweep on the cluster's login node, or here with hydra/launcher=joblib or submitit_local"
    )
    assert not sweep.exists()


@pytest.mark.slow
def test_submitit_local_jobs_split_the_cores_and_end_with_outcome_lines(image_root, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "regularizer=none,l1",
            "data=imagefolder",
            f"data.root={image_root}",
            "epochs=1",
            f"hydra.sweep.dir={sweep}",
            *TINY,
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert f"hymtl: sweep {sweep}: 2 completed, 0 failed" in lines
    for job in ("0", "1"):
        outcome = next(line for line in lines if line.startswith(f"  {sweep / job}: "))
        assert "completed, best val acc" in outcome
        summary = json.loads((sweep / job / "summary.json").read_text())
        # two jobs at once share the cores instead of each taking all of them
        assert summary["threads"] == max(1, (os.cpu_count() or 1) // 2)
    assert not (sweep / ".submitit" / "%j").exists()

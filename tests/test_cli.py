"""`hymtl COMMAND` / `python -m hymtl COMMAND`: one entry point for every command."""

import json
import subprocess
import sys

import pytest

from hymtl.__main__ import COMMANDS

from .conftest import TINY


def hymtl(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "hymtl", *args], cwd=cwd, capture_output=True, text=True
    )


def test_help_lists_every_command():
    result = hymtl("--help")
    assert result.returncode == 0
    listed = [line.split()[0] for line in result.stdout.splitlines()[2:] if line.strip()]
    assert listed == list(COMMANDS) == ["train", "report", "predict", "evaluate", "export"]


def test_unknown_or_missing_command_is_one_line_and_exit_2():
    result = hymtl("trian")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "hymtl: error: unknown command 'trian'"
    assert hymtl().returncode == 2


def test_each_command_is_reached_with_its_own_arguments(tmp_path):
    shown = hymtl("train", "--cfg", "job", "regularizer=l1", "lambda_l1=0.05")
    assert shown.returncode == 0 and "lambda_l1: 0.05" in shown.stdout
    refused = hymtl("predict", "devise=cpu")
    assert refused.returncode == 2 and "(did you mean device?)" in refused.stderr
    missing = hymtl("report", str(tmp_path / "missing"))
    assert missing.returncode == 2 and missing.stderr.startswith("hymtl-report: error:")


@pytest.mark.slow
def test_hymtl_train_runs_like_python_m_hymtl_train(image_root, tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["data=imagefolder", f"data.root={image_root}", "epochs=1", *TINY]
    result = hymtl("train", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert (run_dir / "train.log").stat().st_size > 0

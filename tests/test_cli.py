"""`hymtl COMMAND` / `python -m hymtl COMMAND`: one entry point for every command."""

import json
import os
import subprocess
import sys

import pytest

from hymtl.__main__ import COMMANDS

from .conftest import TINY

REGULARIZERS = ["elasticnet", "l1", "l2", "l2sp", "none"]  # conf/regularizer/


def hymtl(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "hymtl", *args], cwd=cwd, capture_output=True, text=True
    )


def test_help_lists_every_command():
    result = hymtl("--help")
    assert result.returncode == 0
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS) == ["train", "report", "predict", "evaluate", "export"]


def test_unknown_or_missing_command_is_one_line_and_exit_2():
    result = hymtl("trian")
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first == "hymtl: error: unknown command 'trian' (did you mean train?)"
    assert hymtl("zzz").stderr.splitlines()[0] == "hymtl: error: unknown command 'zzz'"
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


def test_train_help_lists_the_groups_and_the_top_level_keys(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hymtl.train", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    page = result.stdout
    lines = [line.strip() for line in page.splitlines()]
    assert lines[0].startswith("hymtl train: ")
    groups = lines[lines.index("Config groups (GROUP=OPTION picks conf/GROUP/OPTION.yaml):") + 1 :]
    assert groups[:10] == [
        "data: hymenoptera, imagefolder                (default: hymenoptera)",
        "model: mobilenet_v2, resnet18, resnet50       (default: resnet18)",
        "regularizer: elasticnet, l1, l2, l2sp, none   (default: none)",
        "optimizer: adamw, sgd                         (default: sgd)",
        "scheduler: cosine, none, steplr               (default: steplr)",
        "augment: none, reference, trivialaugment      (default: reference)",
        "evaluation: holdout, kfold, reference         (default: reference)",
        "logger: mlflow, none, tensorboard             (default: none)",
        "experiment: cv_study, regularization_study    (optional)",
        "hparams_search: lambda_search                 (optional)",
    ]
    keys = lines[lines.index("Top-level keys and their defaults (KEY=VALUE):") + 1 :]
    assert keys[0].startswith("lambda_l1: 0.03 ") and "epochs: 25" in keys
    assert "patience: null" in page and "metric: val_acc" in page
    # Neither the schema/ groups of the ConfigStore nor Hydra's internals are options to pick.
    assert "schema/" not in page and "_target_" not in page and "hydra/help" not in page
    assert not list(tmp_path.iterdir())  # --help runs nothing and makes no run dir


@pytest.mark.parametrize(
    "typed, offered",
    [
        ("hymtl ", "train report predict evaluate export"),
        ("hymtl ev", "evaluate"),
        ("hymtl predict ckpt=x.pt dev", "device="),
        ("hymtl train regularizer=e", "regularizer=elasticnet"),
        ("hymtl report ", ""),  # not a Hydra app: its arguments are folders, bash's default
    ],
)
def test_tab_completion_of_commands_then_their_keys(typed, offered, tmp_path):
    env = {**os.environ, "COMP_LINE": typed}
    result = subprocess.run(
        [sys.executable, "-m", "hymtl", "-sc", "query=bash"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == offered


def test_the_installed_bash_completion_asks_hymtl(tmp_path):
    script = hymtl("-sc", "install=bash", cwd=tmp_path).stdout
    assert '$(COMP_LINE="$COMP_LINE" hymtl -sc query=bash 2> /dev/null)' in script
    assert script.strip().endswith("complete -o nospace -o default -F _hymtl_completion hymtl")
    # `hymtl predict -sc install=bash` gives the same script (Hydra's would name `hymtl predict`)
    assert hymtl("predict", "-sc", "install=bash", cwd=tmp_path).stdout == script


def test_completing_a_train_key_lists_its_options_without_importing_torch():
    """A TAB must not pay for torch (scripts/completion_time.py measures the time)."""
    probe = (
        "import sys, hymtl.__main__ as m\n"
        "try:\n"
        "    m.main(['-sc', 'query=bash'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\n"
    )
    env = {**os.environ, "COMP_LINE": "hymtl train regularizer="}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    words = result.stdout.split()
    assert words[-2:] == ["no", "torch"], result.stdout + result.stderr
    assert set(words[:-2]) == {f"regularizer={name}" for name in REGULARIZERS}

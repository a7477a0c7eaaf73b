"""hymtl predict and hymtl evaluate as Hydra apps: sweeps over checkpoints, tab completion, typed
keys, and no trace of Hydra in the working directory."""

import csv
import errno
import os
import subprocess
import sys

import pytest
import torch

from hymtl import UserError
from hymtl import predict as predict_cli
from hymtl.cli.app import literal_values, write_outputs
from hymtl.config.compose import hydra_quoted
from hymtl.run.artifacts import save_checkpoint
from hymtl.training.models import build_model

from .conftest import write_class_images

CONFIG = {
    "model": {"name": "resnet18", "pretrained": False},
    "data": {
        "image_size": 32,
        "resize_size": 36,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "min_colors": 64,
    },
    "precision": "fp32",
}


def write_run(run_dir, seed):
    torch.manual_seed(seed)
    model = build_model("resnet18", num_classes=2, pretrained=False)
    run_dir.mkdir(parents=True)
    save_checkpoint(
        run_dir / "best.pt",
        {"model": model.state_dict(), "config": CONFIG, "class_names": ["ants", "bees"]},
    )
    return run_dir / "best.pt"


def hymtl(*args, cwd, cache=None):
    env = {**os.environ, **({"XDG_CACHE_HOME": str(cache)} if cache else {})}
    return subprocess.run(
        [sys.executable, "-m", "hymtl", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def predicted(csv_path):
    with open(csv_path, encoding="utf-8") as handle:
        return {row["path"]: row["predicted"] for row in csv.DictReader(handle)}


def default_output(ckpt):
    """The predictions.csv of the one call that wrote RUN_DIR/predict/<time>/."""
    [folder] = (ckpt.parent / "predict").iterdir()
    return folder / "predictions.csv"


def test_a_sweep_over_checkpoints_writes_one_prediction_per_run(tmp_path):
    ckpt_a, ckpt_b = write_run(tmp_path / "run_a", 0), write_run(tmp_path / "run_b", 1)
    images = tmp_path / "images"
    write_class_images(images, per_class=2, seed=3)
    workdir, cache = tmp_path / "work", tmp_path / "cache"
    workdir.mkdir()
    sweep = hymtl(
        "predict", "-m", f"ckpt={ckpt_a},{ckpt_b}", f"inputs={images}", cwd=workdir, cache=cache
    )
    assert sweep.returncode == 0, sweep.stderr
    for ckpt in (ckpt_a, ckpt_b):
        single = tmp_path / f"single_{ckpt.parent.name}"
        assert predict_cli.main([f"ckpt={ckpt}", f"inputs={images}", f"out={single}"]) == 0
        swept = predicted(default_output(ckpt))
        assert len(swept) == 4 and swept == predicted(single / "predictions.csv")
    assert sweep.stdout.count("4 predictions -> ") == 2
    assert list(workdir.iterdir()) == []  # no outputs/, multirun/, .hydra/ or log file here
    # Hydra's record of the sweep goes to the user's cache (matplotlib keeps its fonts there too)
    assert [p.name for p in (cache / "hymtl" / "predict").iterdir()] == ["multirun.yaml"]


def test_a_failed_job_of_a_sweep_is_one_line_and_the_others_run(tmp_path):
    ckpt = write_run(tmp_path / "run", 0)
    images = tmp_path / "images"
    write_class_images(images, per_class=1, seed=3)
    missing = tmp_path / "gone" / "best.pt"
    result = hymtl("predict", "-m", f"ckpt={missing},{ckpt}", f"inputs={images}", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[:2] == ["Launching 2 jobs locally", f"\t#0 : ckpt={missing} inputs={images}"]
    [line] = [line for line in lines if line.startswith("hymtl-predict: error:")]
    assert line == (
        f"hymtl-predict: error: job 0 (ckpt={missing} inputs={images}): ckpt={missing} does not "
        "exist; pass ckpt=RUN_DIR/best.pt"
    )
    assert len(predicted(default_output(ckpt))) == 2


def test_jobs_of_a_sweep_over_one_checkpoint_keep_each_output(tmp_path):
    ckpt = write_run(tmp_path / "run", 0)
    images = tmp_path / "images"
    write_class_images(images, per_class=1, seed=3)
    args = ["-m", f"ckpt={ckpt}", f"inputs={images}", "batch_size=1,2"]
    result = hymtl("predict", *args, cwd=tmp_path, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    folders = sorted((ckpt.parent / "predict").iterdir())
    assert len(folders) == 2  # before: the second job replaced the first one's files
    assert [len(predicted(folder / "predictions.csv")) for folder in folders] == [2, 2]


@pytest.mark.parametrize(
    "program, typed, expected",
    [
        (
            "predict",
            "",
            "batch_size= ckpt= device= hydra hydra. inputs= out= overwrite= precision=",
        ),
        ("predict", "ckpt=x.pt dev", "device="),
        ("evaluate", "ckpt=x.pt data.", "data.root="),
        ("evaluate", "sp", "split="),
    ],
)
def test_tab_completion_offers_the_commands_keys(program, typed, expected, tmp_path):
    env = {**os.environ, "COMP_LINE": f"hymtl-{program} {typed}"}
    result = subprocess.run(
        [sys.executable, "-m", f"hymtl.{program}", "-sc", "query=bash"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_help_lists_the_keys_with_their_defaults(tmp_path):
    result = hymtl("evaluate", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("hymtl evaluate: a run's metrics again, on any split\n")
    lines = result.stdout.splitlines()
    keys = lines[lines.index("Keys and defaults (??? = required):") + 2 :][:9]
    assert keys == [
        "ckpt: ???",
        "data:",
        "  root: ???",
        "split: val",
        "out: null",
        "device: auto",
        "batch_size: 32",
        "precision: fp32",
        "",
    ]


@pytest.mark.parametrize(
    "value",
    ["/tmp/run\udce9/best.pt", "/tmp/ré sumé (1)/it's [x],y.pt", "/tmp/ü\\", "/tmp/é${x}"],
)
def test_paths_hydra_cannot_read_are_taken_literally(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    [argument] = literal_values([f"ckpt={value}"])
    assert argument == f"ckpt={hydra_quoted(value)}"
    assert OverridesParser.create().parse_override(argument).value() == value.replace(
        "${",
        "\\${",  # OmegaConf turns the escaped `\${` back into `${` when it is read
    )


def test_what_hydra_reads_is_left_as_typed():
    typed = ["-m", "ckpt=a/best.pt,b/best.pt", "out=null", "batch_size=8", "inputs=photos/"]
    assert literal_values(typed) == typed


@pytest.mark.parametrize(
    "sweep, expected",
    [
        (
            ["ckpt=a.pt,b.pt", "devise=cpu"],
            "job 0 (ckpt=a.pt devise=cpu): unknown config key devise (did you mean device?); "
            "`--cfg job` lists every key",
        ),
        (
            ["ckpt=a.pt", "inputs=.", "batch_size=8,eight"],
            "job 1 (ckpt=a.pt inputs=. batch_size=eight): Error merging override "
            "batch_size=eight Value 'eight' of type 'str' could not be converted to Integer",
        ),
    ],
)
def test_a_sweeps_bad_job_is_one_line_before_any_job_runs(sweep, expected, capsys):
    assert predict_cli.main(["-m", *sweep]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"hymtl-predict: error: {expected}"
    assert "Launching" not in captured.err + captured.out


def test_an_os_error_while_writing_is_one_line_and_leaves_nothing(tmp_path):
    def disk_full(path):
        with open(path, "w") as handle:
            handle.write("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    writers = {
        tmp_path / "a.csv": lambda path: open(path, "w").close(),
        tmp_path / "b.png": disk_full,
    }
    with pytest.raises(UserError) as refused:
        write_outputs(writers, overwrite=False)
    assert str(refused.value) == f"cannot write {tmp_path / 'b.png'}: No space left on device"
    assert list(tmp_path.iterdir()) == []  # neither file, no temporary file


def test_a_file_that_appears_while_writing_is_kept(tmp_path):
    first, second = tmp_path / "predictions.csv", tmp_path / "predictions.png"

    def racing(path):  # another process writes the same name meanwhile
        second.write_text("theirs")
        open(path, "w").close()

    with pytest.raises(UserError) as refused:
        write_outputs({first: lambda path: open(path, "w").close(), second: racing}, False)
    assert str(refused.value).startswith(f"{second} appeared while it was being written and is")
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.png"]
    assert second.read_text() == "theirs"
    write_outputs({first: lambda path: open(path, "w").close(), second: racing}, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv", "predictions.png"]
    assert second.read_text() == ""  # overwrite=true: this call's file

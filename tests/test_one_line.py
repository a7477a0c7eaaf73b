"""One line, always: a refused command line is one `hymtl: error:` line and exit status 2, for
a sweep (-m) and `--cfg job` as for a single run; a run told to stop by SIGHUP ends
`interrupted`; what a killed write left in a run dir is removed by the next run that owns it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hymtl.config.compose import (
    hydra_search_path,
    multirun_problem,
    override_problem,
    sweep_samples,
    typed_overrides,
)
from hymtl.run.artifacts import remove_stale_temp_files
from hymtl.run.lifecycle import RunInterrupted, RunOutcome, catch_stop_signals, restore_signals
from hymtl.run.rundir import ARTIFACT_FILES
from hymtl.training.epoch import Progress

from .conftest import run_cli


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("hymtl: error:")]


def expect_one_line(result, *mentions) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    for word in mentions:
        assert word in lines[0]
    return lines[0]


def test_a_sweep_with_a_misspelled_key_is_one_line_before_anything_launches(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(["-m", "epoch=3", "seed=0,1", f"hydra.sweep.dir={sweep_dir}"], tmp_path)
    expect_one_line(result, "unknown config key epoch (did you mean epochs?)")
    assert not sweep_dir.exists() and not (tmp_path / "multirun").exists()


def test_cfg_job_with_a_misspelled_key_is_one_line(tmp_path):
    result = run_cli(["--cfg", "job", "epoch=3"], tmp_path)
    expect_one_line(result, "unknown config key epoch (did you mean epochs?)")
    assert not (tmp_path / "outputs").exists()


def test_typed_overrides_leave_out_flags_and_their_values():
    argv = ["--cfg", "job", "-p", "model", "-m", "epochs=3", "--cfg=hydra", "seed=1"]
    assert typed_overrides(argv) == ["epochs=3", "seed=1"]


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["-m", "epoch=3"], "unknown config key epoch (did you mean epochs?)"),
        (["--multirun", "seed=0,1", "optimizer.lrr=1"], "unknown config key optimizer.lrr"),
        (["-m", "regularizer=l2,foo"], "regularizer=foo is not an option; regularizer options:"),
        (["-m", "batch_size=4,many"], "batch_size=many"),
        (["-m", "seed=range(0,3)", "epochs=many"], "could not be converted to Integer"),
        (["-m", "--cfg", "job", "seed=0,1"], "--cfg and -m (--multirun) do not go together"),
    ],
)
def test_every_job_of_a_sweep_is_checked(argv, expected):
    assert expected in multirun_problem(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "seed=0,1", "regularizer=l1,l2"],
        ["-m", "seed=range(0,1000000000)", "regularizer=glob(l*)"],
        ["-m", "hydra/launcher=joblib", "+extra=1", "lambda_l1=0.1,0.2"],
        ["-m", "hparams_search=lambda_search", "~hydra.sweeper.params.lambda_l2"],
        ["-m", "hparams_search=lambda_search", "lambda_l1=tag(log,interval(1e-6,1e-1))"],
        ["-m", "data=imagefolder", "data.root='/data/a,b',/data/c"],
        ["--cfg", "job", "epochs=3"],  # not a sweep: override_problem's
    ],
)
def test_sweep_syntax_still_composes(argv):
    assert multirun_problem(argv) is None


def test_a_sweep_is_checked_on_a_few_jobs_that_take_every_value():
    with hydra_search_path("hymtl.conf"):
        jobs = sweep_samples(["seed=0,1,2", "regularizer=l1,l2", "epochs=range(1,99999999)"])
    assert jobs == [
        ["seed=0", "regularizer=l1", "epochs=1"],
        ["seed=1", "regularizer=l2", "epochs=1"],
        ["seed=2", "regularizer=l1", "epochs=1"],
    ]


def test_cfg_job_is_checked_as_a_single_run_is():
    assert override_problem(["--cfg", "job", "epoch=3"]).startswith("unknown config key epoch")
    assert override_problem(["-c", "job", "epochs=3"]) is None


def test_a_value_with_a_comma_says_how_to_quote_it():
    problem = override_problem(["data=imagefolder", "data.root=/data/a,b"])
    assert "add -m" in problem
    assert "type \"data.root='/data/a,b'\"" in problem
    quoted = ["data=imagefolder", "data.root='/data/a,b'"]
    assert override_problem(quoted) is None


def test_stale_temp_files_of_atomic_write_are_removed_and_nothing_else(tmp_path):
    stale = [".last.pt.abc.tmp", ".summary.json.k2j_9x1q.tmp", ".metrics.csv.x.tmp"]
    kept = [".notes.tmp", "last.pt.abc.tmp", ".last.pt.tmp", ".mine.txt.abc.tmp", "last.pt"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / ".best.pt.dir.tmp").mkdir()
    os.symlink(tmp_path / "last.pt", tmp_path / ".best.pt.link.tmp")
    assert sorted(remove_stale_temp_files(tmp_path, ARTIFACT_FILES)) == sorted(stale)
    left = {path.name for path in tmp_path.iterdir()}
    assert left == {*kept, ".best.pt.dir.tmp", ".best.pt.link.tmp"}


def test_a_run_that_owns_its_dir_removes_stale_temp_files(tmp_path):
    (tmp_path / ".last.pt.abc.tmp").write_bytes(b"torn")
    (tmp_path / ".notes.tmp").write_text("mine")
    with RunOutcome(tmp_path, None):
        assert not (tmp_path / ".last.pt.abc.tmp").exists()
    assert (tmp_path / ".notes.tmp").read_text() == "mine"


@pytest.mark.skipif(
    signal.getsignal(signal.SIGHUP) == signal.SIG_IGN,
    reason="run under nohup: SIGHUP stays ignored",
)
def test_sighup_ends_a_run_interrupted_and_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted, match="nothing to resume"):
        with RunOutcome(tmp_path, None):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(5)  # the handler raises within it
    status = (tmp_path / "summary.json").read_text()
    assert '"interrupted"' in status
    assert (signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the point
def test_a_stop_signal_swallowed_by_a_finalizer_still_ends_the_run(tmp_path):
    """A SIGTERM whose KeyboardInterrupt is raised inside a __del__ is printed as "Exception
    ignored" and lost; the run remembers it and stops when training would start."""

    class SwallowsTheInterrupt:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises within it, and Python drops what __del__ raises

    with pytest.raises(RunInterrupted, match="interrupted during start-up"):
        with RunOutcome(tmp_path, None) as outcome:
            SwallowsTheInterrupt()  # collected at once: its __del__ runs here
            outcome.training(Progress())
    assert '"interrupted"' in (tmp_path / "summary.json").read_text()


def test_a_sighup_ignored_from_the_start_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        replaced = catch_stop_signals()
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.SIGHUP not in replaced and signal.SIGTERM in replaced
        restore_signals(replaced)
    finally:
        signal.signal(signal.SIGHUP, previous)


REFUSALS = """
import contextlib, io, json, os, sys
from hydra.core.global_hydra import GlobalHydra
import hymtl.train

seen = {}
def run_job(cfg, in_sweep):  # the task, once composed: what its environment says
    seen["full_error"] = os.environ.get("HYDRA_FULL_ERROR")
    return 1.0

hymtl.train.run_job = run_job
results = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["hymtl.train", *argv]
    stderr, code = io.StringIO(), None
    with contextlib.redirect_stderr(stderr):
        try:
            hymtl.train.command_line()
        except SystemExit as exit:
            code = exit.code
    GlobalHydra.instance().clear()
    seen_now, seen["full_error"] = seen.get("full_error", "-"), "-"
    results.append([code, stderr.getvalue(), seen_now, os.environ.get("HYDRA_FULL_ERROR")])
print(json.dumps(results))
"""


def refusals(argvs: list[list[str]], cwd, full_error: str | None = None) -> list:
    """[exit code, stderr, HYDRA_FULL_ERROR as the task saw it ("-": no task), as left after]
    for each command line, run by `hymtl.train.command_line` in one process (the task stubbed)."""
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    if full_error is not None:
        env["HYDRA_FULL_ERROR"] = full_error
    result = subprocess.run(
        [sys.executable, "-c", REFUSALS, json.dumps(argvs)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_what_hydra_cannot_compose_is_its_own_compose_reported_in_one_line(tmp_path):
    """No second compose before Hydra's: Hydra's own failure is the one line, and the switch
    that makes Hydra raise it is off again in the run (its errors reported as always)."""
    run_dir = f"hydra.run.dir={tmp_path / 'run'}"
    cases = [
        (["epoch=3", run_dir], "unknown config key epoch (did you mean epochs?)"),
        (["optimizer.lrr=1"], "unknown config key optimizer.lrr (did you mean optimizer.lr?)"),
        (["model=resnet999"], "model=resnet999 is not an option; model options: mobilenet_v2,"),
        (["epochs=many"], "could not be converted to Integer"),
        (["logger=[mlflow,foo]"], "logger=foo is not an option; logger options: mlflow, none,"),
        (["data=imagefolder", "data.root=/data/a,b"], "type \"data.root='/data/a,b'\""),
        (["--cfg", "job", "epoch=3"], "unknown config key epoch (did you mean epochs?)"),
        # after the compose, before the run: Hydra instantiates its callbacks
        (["+hydra.callbacks.x._target_=nope.Nope"], "'nope.Nope': ModuleNotFoundError(\"No module"),
    ]
    results = refusals([argv for argv, _ in cases], tmp_path)
    for (argv, expected), (code, stderr, task_saw, left) in zip(cases, results):
        lines = stderr.splitlines()
        assert (code, len(lines)) == (2, 1), (argv, stderr)
        assert lines[0].startswith("hymtl: error: ") and expected in lines[0], (argv, stderr)
        assert (task_saw, left) == ("-", None)
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_a_composed_run_sees_hydra_full_error_as_the_user_set_it(tmp_path, image_root):
    argv = [f"data.root={image_root}", f"hydra.run.dir={tmp_path / 'run'}"]
    [(code, stderr, task_saw, left)] = refusals([argv], tmp_path)
    assert (code, task_saw, left) == (None, None, None), stderr
    argv[-1] = f"hydra.run.dir={tmp_path / 'run2'}"
    [(code, stderr, task_saw, left)] = refusals([argv], tmp_path, full_error="1")
    assert (code, task_saw, left) == (None, "1", "1"), stderr
    # without the callback that turns the switch off first, the task turns it off itself
    argv[-1] = f"hydra.run.dir={tmp_path / 'run3'}"
    [(code, stderr, task_saw, left)] = refusals(
        [argv + ["~hydra.callbacks.run_start_guard"]], tmp_path
    )
    assert (code, task_saw, left) == (None, None, None), stderr

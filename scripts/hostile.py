"""Act like a hostile user against the installed CLI and check that every refusal is clean.

    python scripts/hostile.py                        # every case (~6-13 min on 2 busy CPU cores)
    python scripts/hostile.py --list                 # the case names
    python scripts/hostile.py --only resume_ --only signal
    python scripts/hostile.py --only config_,schema_ --keep --verbose

Each case runs `python -m hymtl.train` (or hymtl.predict / hymtl.evaluate / hymtl.report) as a
subprocess in a fresh temporary directory, on a tiny generated image folder, and checks concrete
outcomes: the exit status, exactly one `hymtl: error:` line (or `hymtl-predict: error:`, ...)
and no traceback, which files were or were not created or changed (hashes of every file of a
run dir, `.hydra/` and `train.log` included, `.hymtl.lock` ignored), summary.json's status and
image counts. Cases that need a finished run copy one that is trained once per invocation.
One line per case (`held  NAME` or `BROKEN NAME: WHY`); the last line is `held: K/N`, and the
exit status is 0 only if every case held.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from hymtl.data.toydata import make_toy_image_folder, write_class_images

FAST = [
    "data=imagefolder",
    "data.image_size=32",
    "data.resize_size=36",
    "num_workers=0",
    "model.pretrained=false",
    "precision=fp32",
]
LOCK_NAME = b".hymtl.lock"
TIMEOUT_S = 300
N_TRAIN, N_VAL, CLASSES = 24, 12, ["ants", "bees"]


class Broken(Exception):
    """A case whose expectation did not hold; the message says which and how."""


@dataclass
class Result:
    command: str
    returncode: int
    stdout: str
    stderr: str


TRANSCRIPT: list[Result] = []  # every command of the case in progress, for --verbose


def check(condition: bool, why: str) -> None:
    if not condition:
        raise Broken(why)


def tail(text: str, limit: int = 400) -> str:
    text = text.strip().replace("\n", " | ")
    return text if len(text) <= limit else "..." + text[-limit:]


def shown(argv: list[str]) -> str:
    words = ["python" if word == sys.executable else str(word) for word in argv]
    return shlex.join(words)


# --- running the CLI -------------------------------------------------------------------------


def module(name: str, *args) -> list[str]:
    return [sys.executable, "-m", name, *map(str, args)]


def train(
    data: Path | None, run_dir: Path | None, *overrides, epochs: int = 1, sweep: bool = False
) -> list[str]:
    """hymtl.train with the fast settings; data=None leaves data.root out; sweep adds -m."""
    argv = module("hymtl.train", *(["-m"] if sweep else []), *FAST, f"epochs={epochs}")
    if data is not None:
        argv.append(f"data.root={data}")
    if run_dir is not None:
        argv.append(f"hydra.run.dir={run_dir}")
    return argv + [str(override) for override in overrides]


def environment() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run(argv: list[str], cwd: Path, timeout: float = TIMEOUT_S) -> Result:
    try:
        completed = subprocess.run(
            argv, cwd=cwd, capture_output=True, timeout=timeout, env=environment()
        )
    except subprocess.TimeoutExpired:
        raise Broken(f"no answer within {timeout}s: {shown(argv)}") from None
    result = Result(
        shown(argv),
        completed.returncode,
        completed.stdout.decode("utf-8", "backslashreplace"),
        completed.stderr.decode("utf-8", "backslashreplace"),
    )
    TRANSCRIPT.append(result)
    return result


def default_sigint() -> None:
    """In the child: Ctrl-C's default action. A suite started in the background of a
    non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, and Python then never turns
    it into KeyboardInterrupt: the SIGINT cases would test the shell, not hymtl."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Background:
    """A CLI process left running (for signals and races); its output goes to files."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.argv = argv
        self.stdout = tempfile.TemporaryFile()
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=self.stdout,
            stderr=self.stderr,
            env=environment(),
            preexec_fn=default_sigint,
        )

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                self.finish()
                raise Broken(f"exited ({self.process.returncode}) before {what}")
            if time.monotonic() > deadline:
                self.stop()
                raise Broken(f"no {what} within {timeout}s")
            time.sleep(0.02)

    def send(self, signum: int) -> None:
        if self.process.poll() is not None:
            self.finish()
            raise Broken(f"finished (exit {self.process.returncode}) before the signal landed")
        self.process.send_signal(signum)

    def finish(self, timeout: float = TIMEOUT_S) -> Result:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise Broken(f"no exit within {timeout}s: {shown(self.argv)}") from None
        outputs = []
        for handle in (self.stdout, self.stderr):
            handle.seek(0)
            outputs.append(handle.read().decode("utf-8", "backslashreplace"))
            handle.close()
        result = Result(shown(self.argv), self.process.returncode, *outputs)
        TRANSCRIPT.append(result)
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- what a case checks ----------------------------------------------------------------------


def expect_exit(result: Result, status: int) -> None:
    check(
        result.returncode == status,
        f"exit {result.returncode}, expected {status}; stderr: {tail(result.stderr)}",
    )
    check(
        "Traceback" not in result.stderr + result.stdout,
        f"a traceback: {tail(result.stderr, 600)}",
    )


def one_line(result: Result, prefix: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    check(
        len(lines) == 1, f"{len(lines)} lines start with {prefix!r}; stderr: {tail(result.stderr)}"
    )
    return lines[0]


def expect_refusal(result: Result, prog: str = "hymtl", mentions=(), status: int = 2) -> str:
    """Exit `status`, no traceback, exactly one `PROG: error:` line that names `mentions`."""
    expect_exit(result, status)
    line = one_line(result, f"{prog}: error:")
    for word in mentions:
        check(str(word) in line, f"the error line does not mention {str(word)!r}: {line}")
    return line


def expect_success(result: Result) -> None:
    expect_exit(result, 0)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file (hashed), directory and link under `folder`, hidden ones included;
    `.hymtl.lock` is left out (a lock, not content)."""
    state = {}
    root = os.fsencode(folder)
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = os.path.join(directory, name)
            relative = os.fsdecode(os.path.relpath(path, root))
            if name == LOCK_NAME:
                continue
            if os.path.islink(path):
                state[relative] = "link -> " + os.fsdecode(os.readlink(path))
            elif os.path.isdir(path):
                state[relative + "/"] = "directory"
            else:
                with open(path, "rb") as handle:
                    state[relative] = hashlib.sha256(handle.read()).hexdigest()
    return state


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    found = [f"+{key}" for key in sorted(after.keys() - before.keys())]
    found += [f"-{key}" for key in sorted(before.keys() - after.keys())]
    found += [
        f"~{key}" for key in sorted(before.keys() & after.keys()) if before[key] != after[key]
    ]
    return found


def expect_unchanged(before: dict[str, str], folder: Path) -> None:
    changed = differences(before, snapshot(folder))
    check(not changed, f"{folder.name} changed: {', '.join(changed[:6])}")


def expect_kept(job_dir: Path, before: dict[str, str], log_before: bytes) -> None:
    """A job a sweep re-run keeps: nothing changes but lines appended to its train.log."""
    changed = [name for name in differences(before, snapshot(job_dir)) if name != "~train.log"]
    check(not changed, f"kept job {job_dir.name} changed: {', '.join(changed[:6])}")
    log_after = (job_dir / "train.log").read_bytes()
    check(log_after.startswith(log_before), f"job {job_dir.name}'s train.log was rewritten")


def expect_absent(*paths: Path) -> None:
    for path in paths:
        check(not os.path.lexists(path), f"{path} was created")


def summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    check(path.is_file(), f"no summary.json in {run_dir.name}")
    return json.loads(path.read_text())


def expect_status(run_dir: Path, status: str) -> dict:
    found = summary(run_dir)
    check(
        found.get("status") == status, f"summary.json status {found.get('status')!r} != {status!r}"
    )
    return found


def expect_counts(found: dict, n_train=N_TRAIN, n_val=N_VAL, classes=CLASSES) -> None:
    counts = (found.get("n_train"), found.get("n_val"), found.get("classes"))
    check(counts == (n_train, n_val, classes), f"n_train, n_val, classes = {counts}")


def metrics_epochs(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as handle:
            return [int(row["epoch"]) for row in csv.DictReader(handle)]
    except (ValueError, KeyError):  # a row being written
        return []


def metrics_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def has_metrics_row(run_dir: Path) -> Callable[[], bool]:
    return lambda: len(metrics_epochs(run_dir)) >= 1


# --- tiny data -------------------------------------------------------------------------------


def toy_data(tmp: Path) -> Path:
    return make_toy_image_folder(tmp / "data")


def placeholder_gif(path: Path) -> Path:
    Image.new("RGB", (40, 40), (200, 40, 40)).save(path, format="GIF")
    return path


def non_utf8_jpeg(folder: Path, name: bytes = b"ant_\xff.jpg", rename: bool = False) -> None:
    """A real JPEG under a file name that is not valid UTF-8: a copy of one of the folder's
    images, or (rename=True) that image renamed, so the folder keeps its count."""
    source = sorted(Path(folder).glob("*.jpg"))[0]
    with open(os.fsencode(str(folder)) + b"/" + name, "wb") as handle:
        handle.write(source.read_bytes())
    if rename:
        source.unlink()


# --- shared fixtures: built once per invocation, on first use --------------------------------


class Shared:
    """The toy data, one finished run and one finished sweep, made once and copied by cases."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[str, Path | Broken] = {}

    def once(self, name: str, build: Callable[[Path], None]) -> Path:
        if name not in self.made:
            path = self.root / name
            try:
                build(path)
                self.made[name] = path
            except Broken as error:
                self.made[name] = Broken(f"building the shared {name}: {error}")
        made = self.made[name]
        if isinstance(made, Broken):
            raise made
        return made

    def data(self) -> Path:
        return self.once("data", make_toy_image_folder)

    def finished_run(self) -> Path:
        def build(run_dir: Path) -> None:
            expect_success(run(train(self.data(), run_dir), self.root))
            expect_status(run_dir, "completed")

        return self.once("finished-run", build)

    def sweep(self) -> Path:
        """Two jobs: 0 completes, 1 fails (batch_size=100 is more than 24 images)."""

        def build(sweep_dir: Path) -> None:
            expect_exit(run(self.sweep_command(sweep_dir), self.root), 1)
            expect_status(sweep_dir / "0", "completed")
            expect_status(sweep_dir / "1", "failed")

        return self.once("sweep", build)

    def sweep_command(self, sweep_dir: Path, *extra) -> list[str]:
        overrides = ["batch_size=4,100", f"hydra.sweep.dir={sweep_dir}", *extra]
        return train(self.data(), None, *overrides, sweep=True)

    def copy_of_finished_run(self, tmp: Path, name: str = "run") -> Path:
        return Path(shutil.copytree(self.finished_run(), tmp / name, symlinks=True))


SHARED: Shared  # set in main()
CASES: dict[str, Callable[[Path], None]] = {}


def case(function: Callable[[Path], None]) -> Callable[[Path], None]:
    CASES[function.__name__] = function
    return function


# --- 1. who owns a run directory -------------------------------------------------------------


@case
def rundir_new_run_refused_in_finished_run(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    before = snapshot(run_dir)
    result = run(train(SHARED.data(), run_dir), tmp)
    expect_refusal(
        result, mentions=(run_dir, "completed", "resume=", "hydra.run.dir=", "overwrite=true")
    )
    expect_unchanged(before, run_dir)


@case
def rundir_new_run_refused_even_when_it_would_fail(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    before = snapshot(run_dir)
    result = run(train(SHARED.data(), run_dir, "batch_size=100"), tmp)
    expect_refusal(
        result, mentions=(run_dir, "completed", "resume=", "hydra.run.dir=", "overwrite=true")
    )
    expect_unchanged(before, run_dir)


@case
def rundir_overwrite_moves_old_files_aside(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    before = snapshot(run_dir)
    expect_success(run(train(SHARED.data(), run_dir, "overwrite=true"), tmp))
    replaced = sorted(run_dir.glob("replaced-*"))
    check(len(replaced) == 1, f"{len(replaced)} replaced-* folders, expected 1")
    moved = differences(before, snapshot(replaced[0]))
    check(not moved, f"the replaced files differ from the old run: {', '.join(moved[:6])}")
    found = expect_status(run_dir, "completed")
    expect_counts(found)
    report = run(module("hymtl.report", run_dir, "--out", tmp / "report"), tmp)
    expect_success(report)
    text = (tmp / "report" / "report.md").read_text()
    check("(1 run dirs)" in text, "report.md does not read exactly 1 run dir")
    check("runs: 1 completed, 0 failed, 0 incomplete" in text, "report.md does not count 1 run")


@case
def rundir_refused_while_another_run_trains(tmp: Path) -> None:
    run_dir = tmp / "run"
    first = Background(train(SHARED.data(), run_dir, epochs=50), tmp)
    try:
        first.wait_until(has_metrics_row(run_dir), "a metrics.csv row")
        before = snapshot(run_dir / ".hydra")
        second = run(train(SHARED.data(), run_dir, epochs=50), tmp)
        expect_refusal(second, mentions=(run_dir, "running"))
        expect_unchanged(before, run_dir / ".hydra")
        first.send(signal.SIGTERM)
        expect_exit(first.finish(), 130)
    finally:
        first.stop()


@case
def rundir_that_is_a_regular_file(tmp: Path) -> None:
    target = tmp / "run"
    target.write_text("my notes\n")
    result = run(train(SHARED.data(), target), tmp)
    expect_refusal(result, mentions=(target,))
    check(target.read_text() == "my notes\n", "the file was changed")


@case
def rundir_with_unrelated_file_is_used_and_file_kept(tmp: Path) -> None:
    run_dir = tmp / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me\n")
    expect_success(run(train(SHARED.data(), run_dir), tmp))
    expect_counts(expect_status(run_dir, "completed"))
    check((run_dir / "notes.txt").read_text() == "keep me\n", "notes.txt changed")


@case
def rundir_with_spaces_and_unicode(tmp: Path) -> None:
    run_dir = tmp / "my runs" / "bienenstock é 蜂 (1)"
    quoted = f"hydra.run.dir='{run_dir}'"  # Hydra's override grammar wants spaces quoted
    expect_success(run(train(SHARED.data(), None, quoted), tmp))
    expect_counts(expect_status(run_dir, "completed"))
    check((run_dir / "val_predictions.csv").is_file(), "no val_predictions.csv")
    expect_success(run(module("hymtl.report", tmp / "my runs", "--out", tmp / "report"), tmp))


# --- 2. re-running a sweep -------------------------------------------------------------------


@case
def sweep_rerun_keeps_completed_and_restarts_failed(tmp: Path) -> None:
    """Re-runs a copy of the shared sweep (so from another path and working directory than
    the one that made it): the completed job must stay as it was all the same."""
    sweep_dir = Path(shutil.copytree(SHARED.sweep(), tmp / "sweep", symlinks=True))
    completed, failed = snapshot(sweep_dir / "0"), snapshot(sweep_dir / "1")
    log_before = (sweep_dir / "0" / "train.log").read_bytes()
    result = run(SHARED.sweep_command(sweep_dir), tmp)
    expect_exit(result, 1)
    output = result.stdout + result.stderr
    check(
        "completed earlier with the same config; kept" in output,
        "the output does not say the completed job was kept",
    )
    expect_kept(sweep_dir / "0", completed, log_before)
    replaced = sorted((sweep_dir / "1").glob("replaced-*"))
    check(len(replaced) == 1, f"job 1 has {len(replaced)} replaced-* folders, expected 1")
    moved = differences(failed, snapshot(replaced[0]))
    check(not moved, f"job 1's replaced files differ from its old ones: {', '.join(moved[:6])}")
    expect_status(sweep_dir / "1", "failed")


@case
def sweep_rerun_refuses_job_dir_with_another_config(tmp: Path) -> None:
    sweep_dir = Path(shutil.copytree(SHARED.sweep(), tmp / "sweep", symlinks=True))
    before = snapshot(sweep_dir)
    result = run(SHARED.sweep_command(sweep_dir, "lambda_l1=0.5"), tmp)
    expect_refusal(result, mentions=("lambda_l1", "hydra.sweep.dir="))
    expect_unchanged(before, sweep_dir)


@case
def sweep_rerun_resumes_killed_job(tmp: Path) -> None:
    sweep_dir = tmp / "sweep"
    command = train(
        SHARED.data(), None, "seed=0,1", f"hydra.sweep.dir={sweep_dir}", epochs=3, sweep=True
    )
    sweep = Background(command, tmp)
    try:
        sweep.wait_until(has_metrics_row(sweep_dir / "1"), "a metrics.csv row in job 1")
        sweep.send(signal.SIGKILL)
        sweep.finish()
    finally:
        sweep.stop()
    check(metrics_epochs(sweep_dir / "1") != [1, 2, 3], "job 1 finished before the kill")
    completed = snapshot(sweep_dir / "0")
    log_before = (sweep_dir / "0" / "train.log").read_bytes()
    result = run(command, tmp)
    expect_success(result)
    check(
        "completed earlier with the same config; kept" in result.stdout + result.stderr,
        "the output does not say job 0 was kept",
    )
    expect_kept(sweep_dir / "0", completed, log_before)
    found = expect_status(sweep_dir / "1", "completed")
    resumed = found.get("resumed_after_epoch")
    check(resumed is not None, "job 1 was not resumed (resumed_after_epoch is null)")
    epochs = metrics_epochs(sweep_dir / "1")
    check(epochs == [1, 2, 3], f"job 1's metrics.csv epochs {epochs}, expected [1, 2, 3]")
    check(not list((sweep_dir / "1").glob("replaced-*")), "job 1 was started again, not resumed")


# --- 3. resume= ------------------------------------------------------------------------------


def expect_resume_refused(tmp: Path, target: Path, *extra, mentions=()) -> None:
    before = snapshot(tmp)
    result = run(module("hymtl.train", f"resume={target}", *extra), tmp)
    expect_refusal(result, mentions=mentions)
    expect_unchanged(before, tmp)


@case
def resume_missing_path(tmp: Path) -> None:
    target = tmp / "no" / "such" / "run"
    expect_resume_refused(tmp, target, mentions=(target,))
    expect_absent(tmp / "no")


@case
def resume_a_file(tmp: Path) -> None:
    target = tmp / "notes.txt"
    target.write_text("not a run\n")
    expect_resume_refused(tmp, target, mentions=(target,))


@case
def resume_a_sweep_root(tmp: Path) -> None:
    sweep_dir = Path(shutil.copytree(SHARED.sweep(), tmp / "sweep", symlinks=True))
    expect_resume_refused(tmp, sweep_dir, mentions=(sweep_dir,))


@case
def resume_a_parent_folder_of_runs(tmp: Path) -> None:
    SHARED.copy_of_finished_run(tmp, "runs/a")
    expect_resume_refused(tmp, tmp / "runs", mentions=(tmp / "runs",))


@case
def resume_a_dir_without_last_pt(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    (run_dir / "last.pt").unlink()
    expect_resume_refused(tmp, run_dir, mentions=("last.pt",))


@case
def resume_garbage_last_pt(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    (run_dir / "last.pt").write_bytes(os.urandom(4096))
    expect_resume_refused(tmp, run_dir, mentions=("last.pt",))


@case
def resume_truncated_last_pt(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    data = (run_dir / "last.pt").read_bytes()
    (run_dir / "last.pt").write_bytes(data[: len(data) // 2])
    expect_resume_refused(tmp, run_dir, mentions=("last.pt",))


@case
def resume_last_pt_that_is_a_plain_state_dict(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    weights = torch.load(run_dir / "best.pt", weights_only=True)["model"]
    torch.save(weights, run_dir / "last.pt")
    expect_resume_refused(tmp, run_dir, mentions=("last.pt",))


@case
def resume_with_changed_override(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    expect_resume_refused(tmp, run_dir, "optimizer.lr=0.1", mentions=("optimizer.lr",))


@case
def resume_with_epochs_zero(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    expect_resume_refused(tmp, run_dir, "epochs=0", mentions=("epochs",))


@case
def resume_completed_run_has_nothing_to_do(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    before = snapshot(tmp)
    result = run(module("hymtl.train", f"resume={run_dir}"), tmp)
    expect_success(result)
    check(
        "nothing to do" in result.stdout + result.stderr,
        f"no 'nothing to do': {tail(result.stderr)}",
    )
    expect_unchanged(before, tmp)


@case
def resume_with_more_epochs_extends_the_run(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    expect_success(run(module("hymtl.train", f"resume={run_dir}", "epochs=3"), tmp))
    found = expect_status(run_dir, "completed")
    epochs = metrics_epochs(run_dir)
    check(epochs == [1, 2, 3], f"metrics.csv epochs {epochs}, expected [1, 2, 3]")
    check(found.get("epochs") == 3, f"summary.json epochs {found.get('epochs')}, expected 3")
    expect_counts(found)


# --- 4. no false success: non-finite numbers -------------------------------------------------


def expect_config_refused(tmp: Path, *overrides, mentions=(), data: bool = True) -> None:
    run_dir = tmp / "run"
    result = run(train(SHARED.data() if data else None, run_dir, *overrides), tmp)
    expect_refusal(result, mentions=mentions)
    expect_absent(run_dir, tmp / "outputs", tmp / "multirun")


@case
def config_lr_nan(tmp: Path) -> None:
    expect_config_refused(tmp, "optimizer.lr=nan", mentions=("optimizer.lr",))


@case
def config_lambda_l1_inf(tmp: Path) -> None:
    expect_config_refused(tmp, "lambda_l1=inf", mentions=("lambda_l1",))


@case
def config_momentum_minus_inf(tmp: Path) -> None:
    expect_config_refused(tmp, "optimizer.momentum=-inf", mentions=("optimizer.momentum",))


@case
def config_unknown_model_option(tmp: Path) -> None:
    expect_config_refused(tmp, "model=resnet999", mentions=("resnet999",))


@case
def config_unknown_logger_option(tmp: Path) -> None:
    expect_config_refused(tmp, "logger=foo", mentions=("logger=foo", "mlflow, none, tensorboard"))
    expect_config_refused(
        tmp, "logger=[mlflow,foo]", mentions=("logger=foo", "mlflow, none, tensorboard")
    )


@case
def config_epochs_not_a_number(tmp: Path) -> None:
    expect_config_refused(tmp, "epochs=many", mentions=("epochs",))


@case
def config_batch_size_zero(tmp: Path) -> None:
    expect_config_refused(tmp, "batch_size=0", mentions=("batch_size",))


@case
def config_label_smoothing_out_of_range(tmp: Path) -> None:
    expect_config_refused(tmp, "loss.label_smoothing=1.5", mentions=("loss.label_smoothing",))


@case
def config_early_stopping_patience_zero(tmp: Path) -> None:
    expect_config_refused(tmp, "early_stopping.patience=0", mentions=("early_stopping.patience",))


@case
def weights_path_is_a_folder_or_a_device(tmp: Path) -> None:
    for target in (tmp, Path("/dev/null")):
        result = run(train(SHARED.data(), tmp / "run", f"model.weights_path={target}"), tmp)
        expect_refusal(result, mentions=("model.weights_path",))


@case
def weights_path_is_an_image(tmp: Path) -> None:
    image = next((SHARED.data() / "train" / "ants").glob("*.jpg"))
    result = run(train(SHARED.data(), tmp / "run", f"model.weights_path={image}"), tmp)
    line = expect_refusal(result, mentions=("refused to load",))
    check(len(line) < 300, f"the refusal is {len(line)} characters long")


@case
def batch_of_one_image_per_step(tmp: Path) -> None:
    """32-px images end at 1x1 feature maps: BatchNorm cannot train on one image at a time."""
    run_dir = tmp / "run"
    result = run(train(SHARED.data(), run_dir, "batch_size=1"), tmp)
    expect_refusal(result, mentions=("batch_size=1",))
    expect_status(run_dir, "failed")


# --- 6. closed schema ------------------------------------------------------------------------


@case
def schema_added_misspelled_key(tmp: Path) -> None:
    expect_config_refused(tmp, "+epoch=3", mentions=("epochs",))


@case
def schema_added_misspelled_nested_key(tmp: Path) -> None:
    expect_config_refused(tmp, "+optimizer.lrr=0.1", mentions=("lrr",))


@case
def schema_added_unknown_group(tmp: Path) -> None:
    expect_config_refused(tmp, "+foo.bar=1", mentions=("foo",))


@case
def schema_misspelled_key(tmp: Path) -> None:
    expect_config_refused(tmp, "epoch=3", mentions=("epoch",))


@case
def schema_negative_seed(tmp: Path) -> None:
    expect_config_refused(tmp, "seed=-1", mentions=("seed",))


@case
def schema_seed_beyond_32_bits(tmp: Path) -> None:
    expect_config_refused(tmp, "seed=4294967296", mentions=("seed",))


@case
def schema_negative_threads(tmp: Path) -> None:
    expect_config_refused(tmp, "threads=-1", mentions=("threads",))


@case
def schema_fp16_on_cpu(tmp: Path) -> None:
    expect_config_refused(tmp, "precision=fp16", mentions=("fp16",))


# --- 5. data ---------------------------------------------------------------------------------


@case
def data_symlink_loop_in_class_folder(tmp: Path) -> None:
    data = toy_data(tmp)
    os.symlink(".", data / "train" / "ants" / "loop")
    run_dir = tmp / "run"
    expect_success(run(train(data, run_dir), tmp))
    expect_counts(expect_status(run_dir, "completed"))


@case
def data_hidden_checkpoint_folders(tmp: Path) -> None:
    data = toy_data(tmp)
    for hidden in ("train", "val", "train/ants"):
        folder = data / hidden / ".ipynb_checkpoints"
        folder.mkdir()
        shutil.copy(next((data / "train" / "ants").glob("*.jpg")), folder / "ants_0-checkpoint.jpg")
    run_dir = tmp / "run"
    expect_success(run(train(data, run_dir), tmp))
    expect_counts(expect_status(run_dir, "completed"))


@case
def data_file_name_not_utf8(tmp: Path) -> None:
    data = toy_data(tmp)
    non_utf8_jpeg(data / "train" / "ants", rename=True)
    non_utf8_jpeg(data / "val" / "ants", rename=True)
    run_dir = tmp / "run"
    expect_success(run(train(data, run_dir), tmp))
    expect_counts(expect_status(run_dir, "completed"))
    try:
        text = (run_dir / "val_predictions.csv").read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise Broken(f"val_predictions.csv is not UTF-8: {error}") from None
    check("ant_\\xff.jpg" in text, "val_predictions.csv does not list ant_\\xff.jpg")
    check(len(text.strip().splitlines()) == N_VAL + 1, "val_predictions.csv lacks rows")


@case
def data_last_batch_of_one_image(tmp: Path) -> None:
    """25 training images with batch_size=4 leave a last batch of one (BatchNorm's bane)."""
    data = toy_data(tmp)
    extra = sorted((data / "train" / "ants").glob("*.jpg"))[0]
    shutil.copy(extra, extra.with_name("ants_extra.jpg"))
    run_dir = tmp / "run"
    expect_success(run(train(data, run_dir, "batch_size=4"), tmp))
    expect_counts(expect_status(run_dir, "completed"), n_train=N_TRAIN + 1)


@case
def data_placeholder_gif_is_skipped(tmp: Path) -> None:
    data = toy_data(tmp)
    placeholder_gif(data / "train" / "ants" / "imageNotFound.gif")
    run_dir = tmp / "run"
    expect_success(run(train(data, run_dir), tmp))
    found = expect_status(run_dir, "completed")
    expect_counts(found)
    skipped = json.dumps(found.get("skipped_files"))
    check("imageNotFound.gif" in skipped, f"skipped_files does not name the GIF: {skipped}")


def expect_data_refused(tmp: Path, data: Path, mentions=()) -> None:
    """One line, exit 2, before any training; a run dir, if made, says failed."""
    run_dir = tmp / "run"
    expect_refusal(run(train(data, run_dir), tmp), mentions=mentions)
    if run_dir.exists():
        expect_status(run_dir, "failed")
        check(not (run_dir / "last.pt").exists(), "a last.pt was written: training started")


@case
def data_empty_class_folder(tmp: Path) -> None:
    data = toy_data(tmp)
    (data / "train" / "wasps").mkdir()
    (data / "val" / "wasps").mkdir()
    expect_data_refused(tmp, data, mentions=("wasps",))


@case
def data_root_is_a_file(tmp: Path) -> None:
    archive = tmp / "images.zip"
    archive.write_bytes(b"PK\x03\x04 not really")
    expect_data_refused(tmp, archive, mentions=(archive,))
    check(archive.read_bytes() == b"PK\x03\x04 not really", "images.zip changed")


@case
def data_root_missing(tmp: Path) -> None:
    missing = tmp / "no-such-images"
    expect_data_refused(tmp, missing, mentions=(missing,))
    expect_absent(missing)


@case
def data_imagefolder_without_root(tmp: Path) -> None:
    expect_config_refused(tmp, mentions=("data.root",), data=False)


# --- 7. signals ------------------------------------------------------------------------------


def interrupted_at_startup(tmp: Path, signum: int) -> None:
    run_dir = tmp / "run"
    training = Background(train(SHARED.data(), run_dir, epochs=50), tmp)
    try:
        training.wait_until(lambda: (run_dir / ".hydra").is_dir(), "a .hydra/ folder")
        training.send(signum)
        result = training.finish()
    finally:
        training.stop()
    expect_exit(result, 130)
    line = one_line(result, "hymtl:")
    check(
        "resume=" in line or "nothing to resume" in line,
        f"the line has neither a resume command nor 'nothing to resume': {line}",
    )
    expect_status(run_dir, "interrupted")


def interrupted_mid_training(tmp: Path, signum: int, epochs: int) -> Path:
    run_dir = tmp / "run"
    training = Background(train(SHARED.data(), run_dir, epochs=epochs), tmp)
    try:
        training.wait_until(has_metrics_row(run_dir), "a metrics.csv row")
        training.send(signum)
        result = training.finish()
    finally:
        training.stop()
    expect_exit(result, 130)
    line = one_line(result, "hymtl:")
    check(f"resume={run_dir}" in line, f"the line has no resume={run_dir}: {line}")
    expect_status(run_dir, "interrupted")
    check(len(metrics_epochs(run_dir)) < epochs, "the run finished before the signal took effect")
    return run_dir


@case
def signal_sigint_at_startup(tmp: Path) -> None:
    interrupted_at_startup(tmp, signal.SIGINT)


@case
def signal_sigterm_at_startup(tmp: Path) -> None:
    interrupted_at_startup(tmp, signal.SIGTERM)


@case
def signal_sigterm_mid_training(tmp: Path) -> None:
    interrupted_mid_training(tmp, signal.SIGTERM, epochs=50)


@case
def signal_sigint_mid_training_then_resume(tmp: Path) -> None:
    run_dir = interrupted_mid_training(tmp, signal.SIGINT, epochs=3)
    expect_success(run(module("hymtl.train", f"resume={run_dir}"), tmp))
    found = expect_status(run_dir, "completed")
    epochs = metrics_epochs(run_dir)
    check(epochs == [1, 2, 3], f"metrics.csv epochs {epochs}, expected [1, 2, 3]")
    expect_counts(found)


# --- 8. predict and evaluate -----------------------------------------------------------------


def predict(ckpt: Path, inputs: Path, out: Path, *extra) -> list[str]:
    return module("hymtl.predict", f"ckpt={ckpt}", f"inputs={inputs}", f"out={out}", *extra)


def evaluate(ckpt: Path, data: Path, out: Path, *extra) -> list[str]:
    return module("hymtl.evaluate", f"ckpt={ckpt}", f"data.root={data}", f"out={out}", *extra)


def images_folder(tmp: Path, count: int = 3) -> Path:
    folder = tmp / "photos"
    folder.mkdir(parents=True)
    for source in sorted((SHARED.data() / "val" / "bees").glob("*.jpg"))[:count]:
        shutil.copy(source, folder / source.name)
    return folder


def read_predictions(out: Path) -> list[dict]:
    try:
        text = (out / "predictions.csv").read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise Broken(f"predictions.csv is not UTF-8: {error}") from None
    return list(csv.DictReader(text.splitlines()))


def bad_checkpoints(tmp: Path) -> dict[str, Path]:
    keyless = tmp / "keyless.pt"
    torch.save({"a": 1}, keyless)
    text = tmp / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    folder = tmp / "checkpoint-folder"
    folder.mkdir()
    return {"keyless": keyless, "text": text, "folder": folder}


@case
def predict_unknown_key(tmp: Path) -> None:
    ckpt = SHARED.finished_run() / "best.pt"
    result = run(predict(ckpt, images_folder(tmp), tmp / "out", "devise=cpu"), tmp)
    expect_refusal(result, "hymtl-predict", mentions=("devise", "did you mean device"))
    expect_absent(tmp / "out")


@case
def evaluate_unknown_key(tmp: Path) -> None:
    ckpt = SHARED.finished_run() / "best.pt"
    result = run(evaluate(ckpt, SHARED.data(), tmp / "out", "devise=cpu"), tmp)
    expect_refusal(result, "hymtl-evaluate", mentions=("devise", "did you mean device"))
    expect_absent(tmp / "out")


def expect_bad_checkpoints_refused(tmp: Path, tool: str) -> None:
    for kind, ckpt in bad_checkpoints(tmp).items():
        out = tmp / f"out-{kind}"
        if tool == "hymtl-predict":
            result = run(predict(ckpt, images_folder(tmp / kind), out), tmp)
        else:
            result = run(evaluate(ckpt, SHARED.data(), out), tmp)
        try:
            expect_refusal(result, tool, mentions=(ckpt.name,))
        except Broken as error:
            raise Broken(f"ckpt that is a {kind}: {error}") from None
        expect_absent(out)


@case
def predict_checkpoints_that_are_not_checkpoints(tmp: Path) -> None:
    expect_bad_checkpoints_refused(tmp, "hymtl-predict")


@case
def evaluate_checkpoints_that_are_not_checkpoints(tmp: Path) -> None:
    expect_bad_checkpoints_refused(tmp, "hymtl-evaluate")


@case
def predict_file_name_not_utf8(tmp: Path) -> None:
    folder = images_folder(tmp)
    non_utf8_jpeg(folder, b"bee_\xfe.jpg")
    out = tmp / "out"
    result = run(predict(SHARED.finished_run() / "best.pt", folder, out), tmp)
    expect_success(result)
    rows = read_predictions(out)
    check(len(rows) == 4, f"{len(rows)} predictions, expected 4")
    check(any("bee_\\xfe.jpg" in row["path"] for row in rows), "bee_\\xfe.jpg is not listed")


@case
def predict_skips_placeholder_gif(tmp: Path) -> None:
    folder = images_folder(tmp)
    placeholder_gif(folder / "imageNotFound.gif")
    out = tmp / "out"
    result = run(predict(SHARED.finished_run() / "best.pt", folder, out), tmp)
    expect_success(result)
    rows = read_predictions(out)
    check(len(rows) == 3, f"{len(rows)} predictions, expected 3")
    check(not any("imageNotFound" in row["path"] for row in rows), "the GIF got a prediction")
    check("imageNotFound.gif" in result.stdout + result.stderr, "the GIF's skip is not reported")


@case
def predict_inputs_missing(tmp: Path) -> None:
    missing = tmp / "no-photos"
    result = run(predict(SHARED.finished_run() / "best.pt", missing, tmp / "out"), tmp)
    expect_refusal(result, "hymtl-predict", mentions=(missing,))
    expect_absent(tmp / "out", missing)


@case
def predict_damaged_torchscript_export(tmp: Path) -> None:
    """An export cut short (a full disk, an interrupted copy) and random bytes under an
    export's name: one line naming the file and the command that writes it again."""
    ckpt = SHARED.finished_run() / "best.pt"
    shipped = tmp / "shipped" / "model.torchscript.pt"
    expect_success(run(module("hymtl.export", f"ckpt={ckpt}", f"out={shipped}"), tmp))
    cut = tmp / "cut" / "model.torchscript.pt"
    cut.parent.mkdir()
    cut.write_bytes(shipped.read_bytes()[: shipped.stat().st_size // 2])
    shutil.copyfile(shipped.with_suffix(".json"), cut.with_suffix(".json"))
    noise = tmp / "model.ts"
    noise.write_bytes(os.urandom(4096))
    images = images_folder(tmp)
    for damaged, source in ((cut, ckpt), (noise, "RUN_DIR/best.pt")):
        out = tmp / f"out-{damaged.suffix[1:]}"
        result = run(predict(damaged, images, out), tmp)
        again = f"hymtl export ckpt={source} out={damaged} overwrite=true"
        expect_refusal(result, "hymtl-predict", mentions=(damaged, "damaged", again))
        expect_absent(out)


@case
def evaluate_writes_a_new_file_per_call(tmp: Path) -> None:
    out = tmp / "out"
    for _ in range(2):
        expect_success(run(evaluate(SHARED.finished_run() / "best.pt", SHARED.data(), out), tmp))
    reports = sorted(out.glob("evaluation-*.json"))
    check(len(reports) == 2, f"{len(reports)} evaluation-*.json files after two calls, expected 2")


# --- 9. report -------------------------------------------------------------------------------


@case
def report_on_empty_dir(tmp: Path) -> None:
    empty = tmp / "empty"
    empty.mkdir()
    expect_refusal(run(module("hymtl.report", empty), tmp), "hymtl-report", mentions=(empty,))
    check(not any(empty.iterdir()), "something was written into the empty dir")


@case
def report_on_missing_dir(tmp: Path) -> None:
    missing = tmp / "missing"
    expect_refusal(run(module("hymtl.report", missing), tmp), "hymtl-report", mentions=(missing,))
    expect_absent(missing)


# --- 10. outputs of predict and export: never onto a run's files, never over a file unasked ---


def export_argv(ckpt: Path, out: Path | None, *extra) -> list[str]:
    return module("hymtl.export", f"ckpt={ckpt}", *([f"out={out}"] if out else []), *extra)


def predict_default_argv(ckpt: Path, inputs: Path, *extra) -> list[str]:
    """hymtl.predict without out=: its default output folder."""
    return module("hymtl.predict", f"ckpt={ckpt}", f"inputs={inputs}", *extra)


def read_only(folder: Path, argv: list[str]) -> list[str]:
    """`argv` run where `folder` cannot be written: chmod for a normal user; root writes
    through permission bits, so for root the command runs in its own mount namespace with
    `folder` bind-mounted read-only (unshare)."""
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return argv
    check(shutil.which("unshare") is not None, "root, and no unshare to make a read-only folder")
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(folder), *argv]


@case
def outputs_export_onto_summary_json_refused(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    before = snapshot(run_dir)
    for extra in ([], ["overwrite=true"]):
        result = run(export_argv(run_dir / "best.pt", run_dir / "summary.json", *extra), tmp)
        expect_refusal(result, "hymtl-export", mentions=("summary.json", "overwrite=true"))
        # the model's name is no run's, but the JSON beside it would be summary.json
        result = run(export_argv(run_dir / "best.pt", run_dir / "summary.pt", *extra), tmp)
        expect_refusal(result, "hymtl-export", mentions=(run_dir / "summary.json",))
    expect_unchanged(before, run_dir)


@case
def outputs_export_onto_last_pt_refused(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    before = snapshot(run_dir)
    for name in ("last.pt", "best.pt", "predictions.png"):
        result = run(export_argv(run_dir / "best.pt", run_dir / name, "overwrite=true"), tmp)
        expect_refusal(result, "hymtl-export", mentions=(run_dir / name, "overwrite=true"))
    expect_unchanged(before, run_dir)


@case
def outputs_predict_into_run_dir_refused(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    images = images_folder(tmp)
    before = snapshot(run_dir)
    for extra in ([], ["overwrite=true"]):
        result = run(predict(run_dir / "best.pt", images, run_dir, *extra), tmp)
        expect_refusal(result, "hymtl-predict", mentions=(run_dir / "predictions.png",))
    expect_unchanged(before, run_dir)


@case
def outputs_two_predict_calls_keep_both(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    images = images_folder(tmp)
    before = snapshot(run_dir)
    for _ in range(2):
        expect_success(run(predict_default_argv(run_dir / "best.pt", images), tmp))
    added = differences(before, snapshot(run_dir))
    others = [name for name in added if not name.startswith("+predict/")]
    check(not others, f"the run dir changed outside predict/: {', '.join(others[:6])}")
    folders = sorted(path for path in (run_dir / "predict").iterdir())
    check(len(folders) == 2, f"{len(folders)} folders in predict/ after two calls, expected 2")
    for folder in folders:
        check(len(read_predictions(folder)) == 3, f"{folder.name}: not 3 predictions")
        check((folder / "predictions.png").is_file(), f"{folder.name}: no predictions.png")


@case
def outputs_existing_export_kept_unless_overwrite(tmp: Path) -> None:
    ckpt = SHARED.finished_run() / "best.pt"
    out = tmp / "shipped" / "model.pt"
    expect_success(run(export_argv(ckpt, out), tmp))
    out.write_bytes(b"the model handed on last week")
    before = snapshot(out.parent)
    expect_refusal(run(export_argv(ckpt, out), tmp), "hymtl-export", mentions=(out, "exists"))
    expect_unchanged(before, out.parent)
    # a predict out= folder that holds an earlier call's files: kept the same way
    first = tmp / "first"
    expect_success(run(predict(ckpt, images_folder(tmp), first), tmp))
    kept = snapshot(first)
    again = run(predict(ckpt, tmp / "photos", first), tmp)
    expect_refusal(again, "hymtl-predict", mentions=("predictions.csv", "overwrite=true"))
    expect_unchanged(kept, first)
    expect_success(run(export_argv(ckpt, out, "overwrite=true"), tmp))
    check(out.read_bytes() != b"the model handed on last week", "overwrite=true kept the file")
    leftovers = sorted(path.name for path in out.parent.iterdir())
    check(leftovers == ["model.json", "model.pt"], f"{out.parent.name} holds {leftovers}")


@case
def outputs_read_only_folder_one_line(tmp: Path) -> None:
    ckpt = SHARED.finished_run() / "best.pt"
    images = images_folder(tmp)
    locked = tmp / "locked"
    locked.mkdir()
    try:
        for argv in (
            export_argv(ckpt, locked / "model.pt"),
            predict(ckpt, images, locked / "predictions"),
            export_argv(ckpt, locked / "sub" / "model.pt"),  # a folder that cannot be made
        ):
            prog = "hymtl-export" if "hymtl.export" in argv else "hymtl-predict"
            expect_refusal(run(read_only(locked, argv), tmp), prog, mentions=(locked,))
    finally:
        locked.chmod(0o755)
    check(not any(locked.iterdir()), f"{locked.name} got {sorted(locked.iterdir())}")


@case
def outputs_directory_or_file_where_the_other_is_expected(tmp: Path) -> None:
    ckpt = SHARED.finished_run() / "best.pt"
    folder = tmp / "a-folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    notes = tmp / "notes.txt"
    notes.write_text("not a folder\n")
    images = images_folder(tmp)
    before = snapshot(tmp)
    for out in (folder, notes / "model.pt"):  # export: a file is expected
        result = run(export_argv(ckpt, out, "overwrite=true"), tmp)
        expect_refusal(result, "hymtl-export", mentions=(out,))
    for out in (notes, notes / "sub"):  # predict: a folder is expected
        result = run(predict(ckpt, images, out, "overwrite=true"), tmp)
        expect_refusal(result, "hymtl-predict", mentions=(out,))
    expect_unchanged(before, tmp)


# --- 11. the data a run trained on, and where its files go ----------------------------------


def run_on_own_data(tmp: Path, *overrides) -> tuple[Path, Path]:
    """A finished 1-epoch run on a data folder of the case's own, which the case may change."""
    data, run_dir = toy_data(tmp), tmp / "run"
    expect_success(run(train(data, run_dir, *overrides), tmp))
    return data, run_dir


@case
def datachange_resume_after_an_image_was_removed(tmp: Path) -> None:
    data, run_dir = run_on_own_data(tmp)
    (data / "train" / "ants" / "ants_0.jpg").unlink()
    mentions = ("1 removed", "train/ants/ants_0.jpg", "resume_allow_data_change=true")
    expect_resume_refused(tmp, run_dir, "epochs=2", mentions=mentions)


@case
def datachange_resume_after_an_image_was_edited_at_the_same_size(tmp: Path) -> None:
    data, run_dir = run_on_own_data(tmp)
    image = data / "val" / "bees" / "bees_1.jpg"
    content = bytearray(image.read_bytes())
    content[-3] ^= 0xFF  # same size, other bytes: another image as far as training goes
    image.write_bytes(bytes(content))
    expect_resume_refused(tmp, run_dir, "epochs=2", mentions=("1 changed", "bees_1.jpg"))


@case
def datachange_resume_after_a_class_folder_was_renamed(tmp: Path) -> None:
    data, run_dir = run_on_own_data(tmp)
    for split in ("train", "val"):
        (data / split / "bees").rename(data / split / "wasps")
    extra = ("epochs=2", "resume_allow_data_change=true")
    expect_resume_refused(tmp, run_dir, *extra, mentions=("class folders changed", "wasps"))


@case
def datachange_resume_after_a_class_was_added(tmp: Path) -> None:
    data, run_dir = run_on_own_data(tmp)
    for split in ("train", "val"):
        shutil.copytree(data / split / "bees", data / split / "wasps")
    expect_resume_refused(tmp, run_dir, "epochs=2", mentions=("class folders changed",))


@case
def datachange_allowed_resume_is_recorded(tmp: Path) -> None:
    data, run_dir = run_on_own_data(tmp)
    (data / "train" / "ants" / "ants_0.jpg").unlink()
    argv = module("hymtl.train", f"resume={run_dir}", "epochs=2", "resume_allow_data_change=true")
    expect_success(run(argv, tmp))
    found = expect_status(run_dir, "completed")
    changes = found.get("data_changes")
    check(
        changes == [{"after_epoch": 1, "change": "1 removed (e.g. train/ants/ants_0.jpg)"}],
        f"summary.json data_changes is {changes}",
    )
    check(found.get("n_train") == N_TRAIN - 1, f"n_train {found.get('n_train')}")


@case
def datachange_allowed_resume_refused_when_a_test_set_would_change(tmp: Path) -> None:
    data, run_dir = run_on_own_data(tmp, "evaluation=holdout")
    shutil.copyfile(data / "val" / "ants" / "ants_0.jpg", data / "val" / "ants" / "extra.jpg")
    extra = ("epochs=2", "resume_allow_data_change=true")
    expect_resume_refused(tmp, run_dir, *extra, mentions=("evaluation=holdout", "test set"))


@case
def datachange_sweep_rerun_on_other_data_keeps_no_job(tmp: Path) -> None:
    data, sweep_dir = toy_data(tmp), tmp / "sweep"
    command = train(data, None, "seed=0", f"hydra.sweep.dir={sweep_dir}", sweep=True)
    expect_success(run(command, tmp))
    before = snapshot(sweep_dir / "0")
    shutil.copyfile(data / "train" / "bees" / "bees_0.jpg", data / "train" / "bees" / "new.jpg")
    expect_refusal(run(command, tmp), mentions=("other data", "hydra.sweep.dir="))
    expect_unchanged(before, sweep_dir / "0")


@case
def inside_run_dir_inside_the_data_root(tmp: Path) -> None:
    data = toy_data(tmp)
    before = snapshot(data)
    run_dir = data / "train" / "ants" / "run"
    expect_refusal(run(train(data, run_dir), tmp), mentions=("inside data.root",))
    expect_unchanged(before, data)


@case
def inside_data_root_inside_the_run_dir(tmp: Path) -> None:
    run_dir = tmp / "run"
    data = toy_data(run_dir)
    before = snapshot(run_dir)
    expect_refusal(run(train(data, run_dir), tmp), mentions=("inside the run dir",))
    expect_unchanged(before, run_dir)


@case
def inside_sweep_dir_inside_the_data_root(tmp: Path) -> None:
    data = toy_data(tmp)
    before = snapshot(data)
    sweep_dir = data / "val" / "sweep"
    command = train(data, None, "seed=0,1", f"hydra.sweep.dir={sweep_dir}", sweep=True)
    expect_refusal(run(command, tmp), mentions=("inside data.root",))
    expect_unchanged(before, data)


# --- special files: FIFOs, devices and sockets among the images (never opened) ---------------

SPECIAL_TIMEOUT_S = 240  # a FIFO that is opened blocks for ever: the run must end before this


def expect_skips_named(result: Result, found: dict | None, skips: dict[str, str]) -> None:
    """The one skip warning names each file of `skips` (name -> start of its reason), and so
    does summary.json's skipped_files (when `found` is a run's summary)."""
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "unusable file(s): " in line]
    check(len(lines) == 1, f"{len(lines)} skip warnings, expected 1: {tail(output)}")
    for name, why in skips.items():
        check(f"/{name}: {why}" in lines[0], f"the warning lacks {name}: {why}: {lines[0]}")
    if found is not None:
        listed = {Path(s["path"]).name: s["reason"] for s in found.get("skipped_files") or []}
        for name, why in skips.items():
            check(listed.get(name, "").startswith(why), f"skipped_files lacks {name}: {listed}")


def train_with_special_files(tmp: Path, make: Callable[[Path], dict[str, str]]) -> None:
    """Special files made in the toy data by `make` (-> name: reason) are skipped and named;
    the run completes on the same images as without them."""
    data = toy_data(tmp)
    skips = make(data)
    run_dir = tmp / "run"
    result = run(train(data, run_dir), tmp, timeout=SPECIAL_TIMEOUT_S)
    expect_success(result)
    found = expect_status(run_dir, "completed")
    expect_counts(found)
    expect_skips_named(result, found, skips)


@case
def special_fifo_in_class_folders(tmp: Path) -> None:
    def make(data: Path) -> dict[str, str]:
        os.mkfifo(data / "train" / "ants" / "stuck.jpg")
        os.mkfifo(data / "val" / "bees" / "pipe")
        return {"stuck.jpg": "not a regular file (a FIFO)", "pipe": "not a regular file (a FIFO)"}

    train_with_special_files(tmp, make)


@case
def special_symlinks_to_dev_zero_and_dev_null(tmp: Path) -> None:
    def make(data: Path) -> dict[str, str]:
        os.symlink("/dev/zero", data / "train" / "ants" / "zero.jpg")
        os.symlink("/dev/null", data / "train" / "bees" / "null.jpg")
        why = "not a regular file (a symlink to a character device"
        return {"zero.jpg": why, "null.jpg": why}

    train_with_special_files(tmp, make)


@case
def special_socket_in_class_folder(tmp: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    try:

        def make(data: Path) -> dict[str, str]:
            server.bind(str(data / "val" / "ants" / "s.jpg"))  # a listening socket, as files go
            return {"s.jpg": "not a regular file (a socket)"}

        train_with_special_files(tmp, make)
    finally:
        server.close()


@case
def special_fifo_among_predict_inputs(tmp: Path) -> None:
    folder = images_folder(tmp)
    os.mkfifo(folder / "camera.jpg")
    out = tmp / "out"
    ckpt = SHARED.finished_run() / "best.pt"
    result = run(predict(ckpt, folder, out), tmp, timeout=SPECIAL_TIMEOUT_S)
    expect_success(result)
    rows = read_predictions(out)
    check(len(rows) == 3, f"{len(rows)} predictions, expected 3")
    expect_skips_named(result, None, {"camera.jpg": "not a regular file (a FIFO)"})


@case
def special_fifo_given_as_predict_inputs(tmp: Path) -> None:
    fifo = tmp / "camera.jpg"
    os.mkfifo(fifo)
    out = tmp / "out"
    result = run(
        predict(SHARED.finished_run() / "best.pt", fifo, out), tmp, timeout=SPECIAL_TIMEOUT_S
    )
    expect_refusal(result, "hymtl-predict", mentions=(fifo, "not a regular file (a FIFO)"))
    expect_absent(out)


@case
def special_fifo_in_evaluate_data(tmp: Path) -> None:
    data = Path(shutil.copytree(SHARED.data(), tmp / "data"))
    os.mkfifo(data / "val" / "ants" / "stuck.jpg")
    out = tmp / "out"
    ckpt = SHARED.finished_run() / "best.pt"
    result = run(evaluate(ckpt, data, out), tmp, timeout=SPECIAL_TIMEOUT_S)
    expect_success(result)
    reports = sorted(out.glob("evaluation-*.json"))
    check(len(reports) == 1, f"{len(reports)} evaluation-*.json files, expected 1")
    expect_skips_named(result, None, {"stuck.jpg": "not a regular file (a FIFO)"})


# --- pictures: no name, class count or taken path turns a trained run into `failed` ----------

PICTURES = ("curves.png", "confusion_matrix.png", "predictions.png", "errors.png")


def expect_pictures(run_dir: Path, names=PICTURES + ("calibration.png",)) -> None:
    for name in names:
        path = run_dir / name
        check(path.is_file() and path.stat().st_size > 0, f"{name} missing or empty")
        check(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG")


def expect_drawn(result: Result, found: dict) -> None:
    """No picture-failure warning, and summary.json lists no failed picture."""
    output = result.stdout + result.stderr
    check("could not draw" not in output, f"a picture failed: {tail(output)}")
    check(found.get("plots_failed") == [], f"plots_failed is {found.get('plots_failed')}")


@case
def plots_class_folders_named_like_mathtext(tmp: Path) -> None:
    """`$x^2$` would be drawn as a formula, `$x_$` made mathtext raise after training."""
    data = toy_data(tmp)
    names = {"ants": "$x^2$", "bees": "$x_$"}
    for split in ("train", "val"):
        for old, new in names.items():
            (data / split / old).rename(data / split / new)
    run_dir = tmp / "run"
    result = run(train(data, run_dir), tmp)
    expect_success(result)
    found = expect_status(run_dir, "completed")
    expect_counts(found, classes=sorted(names.values()))
    expect_pictures(run_dir)
    expect_drawn(result, found)


@case
def plots_matplotlibrc_asking_for_latex(tmp: Path) -> None:
    """A matplotlibrc in the working directory (matplotlib reads it) with text.usetex: True,
    on a machine that may have no LaTeX: the pictures are drawn without it."""
    (tmp / "matplotlibrc").write_text("text.usetex: True\n")
    run_dir = tmp / "run"
    result = run(train(SHARED.data(), run_dir), tmp)
    expect_success(result)
    found = expect_status(run_dir, "completed")
    expect_counts(found)
    expect_pictures(run_dir)
    expect_drawn(result, found)


@case
def plots_forty_tiny_classes(tmp: Path) -> None:
    names = [f"class_{index:02}" for index in range(40)]
    write_class_images(tmp / "data" / "train", classes=names, per_class=2, seed=1)
    write_class_images(tmp / "data" / "val", classes=names, per_class=1, seed=2)
    run_dir = tmp / "run"
    started = time.monotonic()
    result = run(train(tmp / "data", run_dir), tmp)
    expect_success(result)
    found = expect_status(run_dir, "completed")
    expect_counts(found, n_train=80, n_val=40, classes=names)
    expect_pictures(run_dir)
    expect_drawn(result, found)
    with Image.open(run_dir / "confusion_matrix.png") as image:
        check(max(image.size) <= 1600, f"confusion_matrix.png is {image.size} pixels")
    seconds = time.monotonic() - started
    check(seconds < TIMEOUT_S / 2, f"the 40-class run took {seconds:.0f}s")


@case
def plots_picture_path_taken_during_the_run(tmp: Path) -> None:
    """curves.png made a directory once the run has claimed its dir (split.csv is written):
    that one picture is a warning, the others are drawn, the run completes."""
    run_dir = tmp / "run"
    training = Background(train(SHARED.data(), run_dir, epochs=2), tmp)
    try:
        training.wait_until(lambda: (run_dir / "split.csv").exists(), "a split.csv")
        try:
            (run_dir / "curves.png").mkdir()
        except FileExistsError:
            raise Broken("the run drew curves.png before the case could take its path") from None
        result = training.finish()
    finally:
        training.stop()
    expect_success(result)
    found = expect_status(run_dir, "completed")
    expect_counts(found)
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "could not draw" in line]
    check(
        len(lines) == 1 and "could not draw curves.png (IsADirectoryError" in lines[0],
        f"expected one warning naming curves.png, got {lines}",
    )
    failed = [entry.get("file") for entry in found.get("plots_failed") or []]
    check(failed == ["curves.png"], f"plots_failed names {failed}, expected ['curves.png']")
    check((run_dir / "curves.png").is_dir(), "the directory at curves.png was not left alone")
    expect_pictures(run_dir, names=PICTURES[1:] + ("calibration.png",))


# --- one line, always: sweeps, --cfg job, paths Hydra reads as syntax, SIGHUP, torn writes ----


def expect_nothing_made(tmp: Path, *paths: Path) -> None:
    """A refused command made no run or sweep dir: neither those it names nor Hydra's defaults."""
    expect_absent(tmp / "outputs", tmp / "multirun", *paths)


def expect_sweep_refused(tmp: Path, *overrides, mentions=()) -> None:
    sweep_dir = tmp / "sweep"
    argv = train(SHARED.data(), None, *overrides, f"hydra.sweep.dir={sweep_dir}", sweep=True)
    expect_refusal(run(argv, tmp), mentions=mentions)
    expect_nothing_made(tmp, sweep_dir)


def with_sighup(handler, action: Callable[[], Result | Path]) -> Result | Path:
    """`action` with SIGHUP set to `handler` here, so that the CLI it starts inherits it."""
    previous = signal.signal(signal.SIGHUP, handler)
    try:
        return action()
    finally:
        signal.signal(signal.SIGHUP, previous)


@case
def oneline_sweep_misspelled_key(tmp: Path) -> None:
    expect_sweep_refused(tmp, "epoch=3", "seed=0,1", mentions=("epoch", "did you mean epochs?"))


@case
def oneline_sweep_unknown_group_option(tmp: Path) -> None:
    expect_sweep_refused(tmp, "regularizer=l2,foo", mentions=("regularizer=foo", "l2sp"))


@case
def oneline_sweep_value_of_the_wrong_type(tmp: Path) -> None:
    expect_sweep_refused(tmp, "batch_size=4,many", mentions=("batch_size=many",))


@case
def oneline_cfg_job_misspelled_key(tmp: Path) -> None:
    result = run(module("hymtl.train", "--cfg", "job", "epoch=3"), tmp)
    expect_refusal(result, mentions=("epoch", "did you mean epochs?"))
    expect_nothing_made(tmp)


@case
def oneline_sweep_syntax_still_sweeps(tmp: Path) -> None:
    sweep_dir = tmp / "sweep"
    overrides = ["seed=range(0,2)", "regularizer=glob(l2)", f"hydra.sweep.dir={sweep_dir}"]
    expect_success(run(train(SHARED.data(), None, *overrides, sweep=True), tmp))
    for job in ("0", "1"):
        expect_counts(expect_status(sweep_dir / job, "completed"))


@case
def oneline_data_root_with_hydra_syntax_is_used_as_typed(tmp: Path) -> None:
    data = Path(shutil.copytree(SHARED.data(), tmp / "d=a[b]'é"))
    run_dir = tmp / "run"
    expect_success(run(train(data, run_dir), tmp))
    found = expect_status(run_dir, "completed")
    check(found["config"]["data"]["root"] == str(data), f"data.root {found['config']['data']}")
    expect_counts(found)


@case
def oneline_data_root_with_a_comma_says_how_to_quote_it(tmp: Path) -> None:
    data = Path(shutil.copytree(SHARED.data(), tmp / "a,b"))
    run_dir = tmp / "run"
    line = expect_refusal(run(train(data, run_dir), tmp), mentions=("-m", "type "))
    expect_nothing_made(tmp, run_dir)
    typed = shlex.split(line.rsplit("type ", 1)[1])  # what the line says to type, as a shell would
    check(len(typed) == 1 and typed[0].startswith("data.root="), f"not one argument: {line}")
    expect_success(run(train(None, run_dir, *typed), tmp))
    expect_counts(expect_status(run_dir, "completed"))


@case
def oneline_sighup_mid_training(tmp: Path) -> None:
    with_sighup(signal.SIG_DFL, lambda: interrupted_mid_training(tmp, signal.SIGHUP, epochs=50))


@case
def oneline_sighup_ignored_under_nohup(tmp: Path) -> None:
    run_dir = tmp / "run"

    def train_and_hang_up() -> Result:
        training = Background(train(SHARED.data(), run_dir, epochs=3), tmp)
        try:
            training.wait_until(has_metrics_row(run_dir), "a metrics.csv row")
            training.send(signal.SIGHUP)
            return training.finish()
        finally:
            training.stop()

    expect_success(with_sighup(signal.SIG_IGN, train_and_hang_up))
    check(metrics_epochs(run_dir) == [1, 2, 3], f"metrics.csv epochs {metrics_epochs(run_dir)}")
    expect_status(run_dir, "completed")


@case
def oneline_stale_temp_file_removed_when_the_run_is_resumed(tmp: Path) -> None:
    run_dir = SHARED.copy_of_finished_run(tmp)
    (run_dir / ".last.pt.abc.tmp").write_bytes(b"a checkpoint write killed midway")
    (run_dir / ".notes.tmp").write_text("the user's")
    expect_success(run(module("hymtl.train", f"resume={run_dir}", "epochs=2"), tmp))
    expect_status(run_dir, "completed")
    expect_absent(run_dir / ".last.pt.abc.tmp")
    notes = run_dir / ".notes.tmp"
    check(notes.is_file() and notes.read_text() == "the user's", ".notes.tmp was not kept")


# --- 12. sweeps and the stores their jobs share ------------------------------------------------


@case
def sweepstore_constant_subdir_refused_before_any_job(tmp: Path) -> None:
    sweep_dir = tmp / "sweep"
    overrides = ("seed=0,1", f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=same")
    result = run(train(SHARED.data(), None, *overrides, sweep=True), tmp)
    expect_refusal(result, mentions=("would share", "hydra.sweep.subdir="))
    expect_absent(sweep_dir / "same")


@case
def sweepstore_two_jobs_create_one_new_mlflow_store(tmp: Path) -> None:
    store, sweep_dir = tmp / "mlflow.db", tmp / "sweep"
    overrides = (
        "seed=0,1",
        "logger=mlflow",
        f"logger.tracking_uri=sqlite:///{store}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep_dir}",
    )
    result = run(train(SHARED.data(), None, *overrides, sweep=True), tmp)
    expect_success(result)
    check("tracker was off" not in result.stderr, f"a tracker was off: {tail(result.stderr)}")
    for job in ("0", "1"):
        found = expect_status(sweep_dir / job, "completed")
        check(not found.get("trackers_off"), f"job {job}: trackers_off {found.get('trackers_off')}")
    from mlflow import MlflowClient  # the [track] extra, as logger=mlflow itself needs

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    check(len(runs) == 2, f"{len(runs)} MLflow runs in the new store, expected 2")


# --- 13. features do what their names say -------------------------------------------------------


@case
def features_val_loss_selects_best_pt_and_stops(tmp: Path) -> None:
    run_dir = tmp / "run"
    overrides = ("early_stopping.metric=val_loss", "early_stopping.patience=2", "optimizer.lr=0.05")
    expect_success(run(train(SHARED.data(), run_dir, *overrides, epochs=6), tmp))
    found = expect_status(run_dir, "completed")
    rows = metrics_rows(run_dir)
    lowest = min(rows, key=lambda row: float(row["val_loss"]))["epoch"]
    check(found.get("selection_metric") == "val_loss", f"selection {found.get('selection_metric')}")
    check(
        str(found.get("best_epoch")) == lowest, f"best_epoch {found.get('best_epoch')} != {lowest}"
    )


@case
def features_frozen_backbone_records_the_augmentation_that_ran(tmp: Path) -> None:
    run_dir = tmp / "run"
    result = run(train(SHARED.data(), run_dir, "model.freeze_backbone=true"), tmp)
    expect_success(result)
    applied = expect_status(run_dir, "completed").get("augmentation_applied", "")
    check(applied.startswith("none"), f"augmentation_applied is {applied!r}")
    warned = "is not applied" in result.stdout + result.stderr
    check(warned, "no warning that the augmentation is not applied")


# --- running the suite -----------------------------------------------------------------------


def selected(only: list[str]) -> list[str]:
    wanted = [part for option in only for part in option.split(",") if part]
    if not wanted:
        return list(CASES)
    return [name for name in CASES if any(part in name for part in wanted)]


def run_case(name: str, keep: bool, verbose: bool) -> bool:
    TRANSCRIPT.clear()
    holder = tempfile.TemporaryDirectory(prefix=f"hymtl-hostile-{name}-")
    tmp = Path(holder.name)
    try:
        CASES[name](tmp)
        held, why = True, ""
    except Broken as error:
        held, why = False, str(error)
    except Exception as error:  # a bug in the case itself, or an unexpected state
        held, why = False, f"the case raised {type(error).__name__}: {error}"
    print(f"held  {name}" if held else f"BROKEN {name}: {why}", flush=True)
    if not held and verbose:
        for result in TRANSCRIPT[-2:]:
            print(f"    $ {result.command}\n    exit {result.returncode}")
            for stream in (result.stdout, result.stderr):
                for line in stream.strip().splitlines()[-8:]:
                    print(f"    | {line}")
    if keep:
        print(f"    kept {tmp}")
    else:
        holder.cleanup()
    return held


def main() -> int:
    global SHARED
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SUBSTRING",
        help="run the cases whose name contains it (repeatable, or comma-separated)",
    )
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dirs")
    parser.add_argument(
        "--verbose", action="store_true", help="show the commands and output of broken cases"
    )
    args = parser.parse_args()
    names = selected(args.only)
    if args.list:
        print("\n".join(names))
        return 0
    if not names:
        print(f"no case matches {args.only}", file=sys.stderr)
        return 2
    shared_holder = tempfile.TemporaryDirectory(prefix="hymtl-hostile-shared-")
    SHARED = Shared(Path(shared_holder.name))
    started = time.monotonic()
    held = sum(run_case(name, args.keep, args.verbose) for name in names)
    if args.keep:
        print(f"shared runs kept in {shared_holder.name}")
    else:
        shared_holder.cleanup()
    print(f"({time.monotonic() - started:.0f}s)")
    print(f"held: {held}/{len(names)}")
    return 0 if held == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())

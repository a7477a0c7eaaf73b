"""Hydra callbacks registered in conf/config.yaml: before a run (RunStartGuard) or a sweep
(SweepStartGuard) writes anything, and after a sweep (SweepOutcome)."""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import shutil
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from hymtl import errors
from hymtl.config.compose import composed, to_plain_dict
from hymtl.data.identity import kept_run_problem
from hymtl.errors import UserError, display_path
from hymtl.run import sweep
from hymtl.run.checks import check_config
from hymtl.run.files import RESUMED_DIR
from hymtl.run.lifecycle import hand_over, open_run
from hymtl.run.resume import NothingToResume
from hymtl.run.rundir import (
    REPLACED_PREFIX,
    config_differences,
    data_root_overlap,
    move_aside,
    read_summary,
    run_state,
    same_config,
)
from hymtl.training.distributed import launched_ranks


def task_config(config: DictConfig) -> DictConfig:
    """The config a job sees: Hydra's composed config without its `hydra` node."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


class RunStartGuard(Callback):
    """A refused start (bad config, a run dir that holds another run, resume= of something that
    is not a run) is one line and leaves every directory as it was: Hydra would otherwise
    create the run dir and write .hydra/ and train.log into it before hymtl's code runs. The
    run it opens is handed over to train(), which does not check it again."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        composed()  # Hydra composed the config: its errors are reported as before from here on
        speaks = launched_ranks().is_main
        task = task_config(config)
        overrides = list(config.hydra.overrides.task)
        try:
            hand_over(open_run(task, config.hydra.run.dir, overrides, hydra_files_written=False))
        except NothingToResume as message:
            if speaks:
                errors.say("hymtl", str(message))
            sys.exit(errors.OK)
        except UserError as error:
            if speaks:
                errors.error("hymtl", error)
            sys.exit(errors.USAGE)
        except KeyboardInterrupt:
            sys.exit(errors.INTERRUPTED)


def quiet_third_party_logging() -> None:
    """A sweep's console is hymtl's and Hydra's: no SQLite-migration chatter from alembic (the
    Optuna study's storage), and Optuna's own lines through the plain root handler instead of
    its colour handler, which writes ANSI codes even into files and pipes."""
    for name in ("alembic", "submitit"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:  # optuna comes with the [search] extra
        import optuna.logging
    except ImportError:
        return
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def basic_sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The overrides of every job Hydra's basic sweeper will launch, in job-number order: its
    `params` first, then the command line's overrides, a later value of a key replacing an
    earlier one, expanded as the sweeper's own cartesian product (BasicSweeper.split_arguments,
    which is not public API)."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.params or {}).items()]
    arguments = params + list(config.hydra.overrides.task)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    choices: OrderedDict[str, list[str]] = OrderedDict()
    for override in parser.parse_overrides(arguments):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise HydraException(
                f"BasicSweeper does not support sweep type : {override.value_type.name}"
            )
    return [list(job) for job in itertools.product(*choices.values())]


def check_sweep_start(config: DictConfig) -> tuple[list[Path], list[Path]]:
    """Before a basic sweep launches anything: every job's config is checked, and every job
    directory that already holds a run is classified. Returns (the job dirs of failed runs,
    whose files go aside so the jobs start again; the job dirs of completed runs with the same
    config, which the jobs keep); raises UserError naming every job that cannot run (bad
    config, a directory holding another config or a running run). Interrupted jobs need
    nothing here: the job itself resumes them."""
    problems, restart, kept = [], [], []
    owners: dict[Path, str] = {}  # job dir -> the job that has it
    hydra_config = HydraConfig.instance().cfg
    try:
        for number, overrides in enumerate(basic_sweep_jobs(config)):
            job_dir, task = job_config(config, number, overrides)
            name = f"job {number} ({' '.join(overrides)})"
            if job_dir in owners:  # Hydra would write both jobs' files into one directory
                problems.append(
                    f"{name} and {owners[job_dir]} would share {display_path(job_dir)}: give "
                    "hydra.sweep.subdir= a per-job value (the default is ${hydra.job.num})"
                )
                continue
            owners[job_dir] = name
            problem, action = job_dir_plan(task, job_dir)
            if problem:
                problems.append(f"{name}: {problem}")
            elif action == "restart":
                restart.append(job_dir)
            elif action == "keep":
                kept.append(job_dir)
    finally:
        HydraConfig.instance().cfg = hydra_config
    if problems:
        raise UserError(
            f"{len(problems)} job(s) of this sweep cannot run: {' | '.join(problems)}; "
            "fix them, or choose another hydra.sweep.dir="
        )
    return restart, kept


def job_config(config: DictConfig, number: int, overrides: list[str]) -> tuple[Path, DictConfig]:
    """A job's directory and config, composed as the launcher will compose them."""
    job = GlobalHydra.instance().config_loader().load_sweep_config(config, list(overrides))
    with open_dict(job):
        job.hydra.job.num = job.hydra.job.id = number
    HydraConfig.instance().set_config(job)  # for ${hydra:...} in the job's subdir
    return Path(job.hydra.sweep.dir) / str(job.hydra.sweep.subdir), task_config(job)


def job_dir_plan(task: DictConfig, job_dir: Path) -> tuple[str | None, str | None]:
    """(why the job cannot run, None) or (None, what to do with its directory: None to start
    or resume in it, "restart" to move a failed run aside, "keep" a completed one)."""
    try:
        check_config(task)
    except UserError as error:
        return str(error), None
    overlap = data_root_overlap(job_dir, task.data.root)
    if overlap:
        return overlap, None
    state = run_state(job_dir)
    if state is None:
        return None, None
    config_now = to_plain_dict(task)
    if state.status == "running":
        return f"{display_path(job_dir)} holds a run still running", None
    if state.config is None and state.epoch is None:
        return None, "restart"  # killed before it recorded its config: nothing trained
    if not same_config(state.config, config_now):
        changed = "; ".join(config_differences(state.config or {}, config_now)[:3])
        return f"{display_path(job_dir)} holds a run with another config ({changed})", None
    if state.status == "failed" or state.epoch is None:
        return None, "restart"
    if state.status == "completed":
        other_data = kept_run_problem(read_summary(job_dir), task.data)
        if other_data:
            return f"{display_path(job_dir)} holds a run, but {other_data}", None
        return None, "keep"
    return None, None


def launcher_target(config: DictConfig) -> str:
    return str(config.hydra.launcher.get("_target_", ""))


def check_launcher(config: DictConfig) -> None:
    """What the chosen launcher needs and this machine lacks, as one line before any job; and,
    for launchers that run jobs side by side here, how many (HYMTL_SWEEP_JOBS, read by each
    job to split the cores: hymtl.training.runtime.resolve_threads)."""
    target = launcher_target(config)
    if target.endswith("SlurmLauncher") and shutil.which("srun") is None:
        raise UserError(
            "hydra/launcher=slurm needs SLURM (no srun on this machine): run the sweep on the "
            "cluster's login node, or here with hydra/launcher=joblib or submitit_local"
        )
    basic_sweeper = str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper")
    if target.endswith(".BasicLauncher") or not basic_sweeper:  # Optuna: its own batches
        return
    os.environ["HYMTL_SWEEP_JOBS"] = str(len(basic_sweep_jobs(config)))


class SweepStartGuard(Callback):
    """A sweep re-run into the same directory continues the study: completed jobs with the same
    config are kept, interrupted or killed ones resume, failed ones start again with their old
    files moved aside, and a directory holding another config stops the sweep before any job
    starts. With other sweepers (Optuna) each job does the same checks on its own."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        quiet_third_party_logging()
        self.kept_hydra_files: dict[Path, bytes] = {}
        try:
            check_launcher(config)
        except UserError as error:
            errors.fail("hymtl", error, errors.USAGE)
        if not str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
            return
        try:
            restart, kept = check_sweep_start(config)
        except UserError as error:
            errors.fail("hymtl", error, errors.USAGE)
        for job_dir in restart:
            moved = move_aside(job_dir)
            where = display_path(job_dir)
            print(f"hymtl: {where}: a failed job, started again; old files in {moved}")
        # Hydra rewrites every job's .hydra/ before the job runs; a kept job's must go on
        # describing the invocation that produced its results.
        for job_dir in kept:
            for path in (job_dir / ".hydra").glob("*"):
                self.kept_hydra_files[path] = path.read_bytes()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        for path, content in getattr(self, "kept_hydra_files", {}).items():
            path.write_bytes(content)


def job_outcome(summary: dict) -> str:
    """One job's end, from its summary.json: what a job run by any launcher left behind."""
    status = summary.get("status", "?")
    if status == "completed":
        accuracy, epoch = summary.get("best_val_acc"), summary.get("best_epoch")
        if isinstance(accuracy, (int, float)):
            return f"completed, best val acc {accuracy:.4f} at epoch {epoch} (chosen on val)"
    return str(status)


def print_outcomes(sweep_dir: Path, summaries: list[dict], failed: int) -> None:
    """The end of a sweep, the same for every launcher: each job's outcome, then the counts.
    Jobs that left no summary.json (killed, or refused before owning a dir) count as such."""
    lines = [f"  {display_path(s['_dir'])}: {job_outcome(s)}" for s in summaries]
    completed = sum(summary.get("status") == "completed" for summary in summaries)
    others = len(summaries) - completed - sum(s.get("status") == "failed" for s in summaries)
    counts = f"{completed} completed, {failed} failed"
    counts += f", {others} interrupted" if others else ""
    print(f"hymtl: sweep {display_path(sweep_dir)}: {counts}", flush=True)
    for line in lines:
        print(line, flush=True)


def remove_empty_submitit_template(sweep_dir: Path) -> None:
    """submitit leaves an empty folder named after its unexpanded pattern (`.submitit/%j`);
    the jobs' own folders beside it hold their logs."""
    template = sweep_dir / ".submitit" / "%j"
    try:
        template.rmdir()  # only when empty
    except OSError:
        pass


class SweepOutcome(Callback):
    """After a sweep, in the launching process, list the jobs whose summary.json says failed.

    Reading the run dirs (rather than a list kept in memory) works whatever launcher ran the
    jobs: in-process, joblib workers, submitit locally or on SLURM. Jobs refused before they
    owned a directory (so with no summary to read) are added by jobs run in this process
    (hymtl.run.sweep's ledger). `hymtl.train.cli` turns failed jobs into exit status 1."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        sweep.start_ledger(str(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        found = {str(Path(job).resolve()): why for job, why in sweep.failed_here().items()}
        trackers_off: dict[str, str] = {}
        for summary in self.job_summaries(sweep_dir):
            job = summary.pop("_dir")
            if summary.get("status") == "failed":
                found[str(job.resolve())] = summary.get("error")
            if summary.get("trackers_off"):
                trackers_off[str(job)] = "; ".join(summary["trackers_off"])
        if trackers_off:  # the jobs completed, but a mirror the sweep asked for missed them
            errors.say(
                "hymtl",
                f"a tracker was off for {len(trackers_off)} job(s); their run dirs hold "
                "everything:",
            )
            for job, reason in sorted(trackers_off.items()):
                print(f"  {job}: {reason}", file=sys.stderr)
        print_outcomes(sweep_dir, self.job_summaries(sweep_dir), len(found))
        remove_empty_submitit_template(sweep_dir)
        failed = [f"{job}: {reason}" for job, reason in sorted(found.items())]
        sweep.record_sweep_failures(failed)
        if failed:
            errors.say("hymtl", f"{len(failed)} job(s) of the sweep failed:")
            for line in failed:
                print(f"  {line}", file=sys.stderr)
            errors.say(
                "hymtl",
                "fix what failed, then continue the sweep (completed jobs are kept): "
                f"{sweep.continue_command()}",
            )

    def job_summaries(self, sweep_dir: Path) -> list[dict]:
        """The summary.json of every job this sweep ran (not an earlier sweep's, not files
        moved aside), each with its job dir under `_dir`."""
        summaries = []
        for summary_path in sorted(sweep_dir.glob("**/summary.json")):
            parts = summary_path.relative_to(sweep_dir).parts
            if any(part.startswith(REPLACED_PREFIX) or part == RESUMED_DIR for part in parts):
                continue
            if summary_path.stat().st_mtime < self.started:  # an earlier sweep in the same dir
                continue
            try:
                summary = json.loads(summary_path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(summary, dict):
                summaries.append({**summary, "_dir": summary_path.parent})
        return summaries

"""Hydra callbacks registered in conf/config.yaml."""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from hymtl import UserError, display_path


def task_config(config: DictConfig) -> DictConfig:
    """The config a job sees: Hydra's composed config without its `hydra` node."""
    task = copy.deepcopy(config)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def check_run_start(config: DictConfig) -> None:
    """What train() would refuse, checked before Hydra writes .hydra/ and train.log: the
    config, the resume target and who owns the run dir. Raises UserError (or NothingToResume)."""
    from hymtl.data.identity import check_same_data, folder_identity
    from hymtl.run.checks import check_config
    from hymtl.run.resume import load_resume_checkpoint, resumed_config
    from hymtl.run.rundir import claim_for_new_run, data_root_overlap, is_locked, refusal, run_state
    from hymtl.training.distributed import launched_ranks

    task = task_config(config)
    check_config(task)
    # A resumed run's data.root is its own config's: train() checks that one.
    overlap = None if task.resume else data_root_overlap(config.hydra.run.dir, task.data.root)
    if overlap:
        raise UserError(overlap)
    if task.resume:
        checkpoint = load_resume_checkpoint(task.resume)
        if is_locked(Path(task.resume).expanduser()):
            raise UserError(refusal(Path(task.resume), run_state(Path(task.resume).expanduser())))
        resumed = resumed_config(checkpoint, task.resume, list(config.hydra.overrides.task), task)
        check_same_data(
            checkpoint.get("data_identity"),
            folder_identity(resumed.data.root, resumed.data.train_dir, resumed.data.val_dir),
            f"resume={display_path(task.resume)}",
            resumed.resume_allow_data_change,
            resumed.evaluation.protocol.value,
        )
    elif launched_ranks().is_main:  # other torchrun ranks log outside the run dir
        claim_for_new_run(Path(config.hydra.run.dir), task.overwrite)


class RunStartGuard(Callback):
    """A refused start (bad config, a run dir that holds another run, resume= of something that
    is not a run) is one line and leaves every directory as it was: Hydra would otherwise
    create the run dir and write .hydra/ and train.log into it before hymtl's code runs."""

    new_run_dir: Path | None = None  # a new single run's directory, once it may be written

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hymtl.run.resume import NothingToResume
        from hymtl.training.distributed import launched_ranks

        speaks = launched_ranks().is_main
        try:
            check_run_start(config)
            if not config.resume and speaks:
                RunStartGuard.new_run_dir = Path(config.hydra.run.dir)
        except NothingToResume as message:
            if speaks:
                print(f"hymtl: {message}", file=sys.stderr)
            sys.exit(0)
        except UserError as error:
            if speaks:
                print(f"hymtl: error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)


def quiet_third_party_logging() -> None:
    """A sweep's console is hymtl's and Hydra's: no SQLite-migration chatter from alembic (the
    Optuna study's storage), and Optuna's own lines through the plain root handler instead of
    its colour handler, which writes ANSI codes even into files and pipes."""
    for name in ("alembic", "submitit"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import optuna.logging
    except ImportError:
        return
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def basic_sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The overrides of every job Hydra's basic sweeper will launch, in job-number order
    (the sweeper's own expansion: its `params` first, then the command line's overrides)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.params or {}).items()]
    arguments = params + list(config.hydra.overrides.task)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    batches = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)
    return [job for batch in batches for job in batch]


def check_sweep_start(config: DictConfig) -> tuple[list[Path], list[Path]]:
    """Before a basic sweep launches anything: every job's config is checked, and every job
    directory that already holds a run is classified. Returns (the job dirs of failed runs,
    whose files go aside so the jobs start again; the job dirs of completed runs with the same
    config, which the jobs keep); raises UserError naming every job that cannot run (bad
    config, a directory holding another config or a running run). Interrupted jobs need
    nothing here: the job itself resumes them."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from hymtl.config.compose import to_plain_dict
    from hymtl.data.identity import kept_run_problem
    from hymtl.run.checks import check_config
    from hymtl.run.rundir import (
        config_differences,
        data_root_overlap,
        read_summary,
        run_state,
        same_config,
    )

    loader = GlobalHydra.instance().config_loader()
    problems, restart, kept = [], [], []
    owners: dict[Path, str] = {}  # job dir -> the job that has it
    hydra_config = HydraConfig.instance().cfg
    try:
        for number, overrides in enumerate(basic_sweep_jobs(config)):
            job = loader.load_sweep_config(config, list(overrides))
            with open_dict(job):
                job.hydra.job.num = job.hydra.job.id = number
            HydraConfig.instance().set_config(job)  # for ${hydra:...} in the job's subdir
            job_dir = Path(job.hydra.sweep.dir) / str(job.hydra.sweep.subdir)
            task = task_config(job)
            name = f"job {number} ({' '.join(overrides)})"
            if job_dir in owners:  # Hydra would write both jobs' files into one directory
                problems.append(
                    f"{name} and {owners[job_dir]} would share {display_path(job_dir)}: give "
                    "hydra.sweep.subdir= a per-job value (the default is ${hydra.job.num})"
                )
                continue
            owners[job_dir] = name
            try:
                check_config(task)
            except UserError as error:
                problems.append(f"{name}: {error}")
                continue
            overlap = data_root_overlap(job_dir, task.data.root)
            if overlap:
                problems.append(f"{name}: {overlap}")
                continue
            state = run_state(job_dir)
            if state is None:
                continue
            config_now = to_plain_dict(task)
            if state.status == "running":
                problems.append(f"{name}: {display_path(job_dir)} holds a run still running")
            elif state.config is None and state.epoch is None:
                restart.append(job_dir)  # killed before it recorded its config: nothing trained
            elif not same_config(state.config, config_now):
                changed = "; ".join(config_differences(state.config or {}, config_now)[:3])
                problems.append(
                    f"{name}: {display_path(job_dir)} holds a run with another config ({changed})"
                )
            elif state.status == "failed" or state.epoch is None:
                restart.append(job_dir)
            elif state.status == "completed":
                other_data = kept_run_problem(read_summary(job_dir), task.data)
                if other_data:
                    problems.append(
                        f"{name}: {display_path(job_dir)} holds a run, but {other_data}"
                    )
                else:
                    kept.append(job_dir)
    finally:
        HydraConfig.instance().cfg = hydra_config
    if problems:
        raise UserError(
            f"{len(problems)} job(s) of this sweep cannot run: {' | '.join(problems)}; "
            "fix them, or choose another hydra.sweep.dir="
        )
    return restart, kept


class SweepStartGuard(Callback):
    """A sweep re-run into the same directory continues the study: completed jobs with the same
    config are kept, interrupted or killed ones resume, failed ones start again with their old
    files moved aside, and a directory holding another config stops the sweep before any job
    starts. With other sweepers (Optuna) each job does the same checks on its own."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hymtl.run.rundir import move_aside

        quiet_third_party_logging()
        self.kept_hydra_files: dict[Path, bytes] = {}
        if not str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
            return
        try:
            restart, kept = check_sweep_start(config)
        except UserError as error:
            print(f"hymtl: error: {error}", file=sys.stderr)
            sys.exit(2)
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


class SweepOutcome(Callback):
    """After a sweep, in the launching process, list the jobs whose summary.json says failed.

    Reading the run dirs (rather than a list kept in memory) works whatever launcher ran the
    jobs: in-process, joblib workers, submitit locally or on SLURM. Jobs refused before they
    owned a directory (so with no summary to read) are added by jobs run in this process.
    `hymtl.train.cli` turns a non-empty list into exit status 1."""

    failed: list[str] = []
    failed_here: dict[str, str] = {}  # job dir -> reason, from jobs run in this process

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        SweepOutcome.failed = []
        SweepOutcome.failed_here = {}

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from hymtl.run.rundir import REPLACED_PREFIX

        sweep_dir = Path(config.hydra.sweep.dir)
        found = {str(Path(job).resolve()): reason for job, reason in self.failed_here.items()}
        trackers_off: dict[str, str] = {}
        for summary_path in sorted(sweep_dir.glob("**/summary.json")):
            parts = summary_path.relative_to(sweep_dir).parts
            if any(part.startswith(REPLACED_PREFIX) or part == "resumed" for part in parts):
                continue
            if summary_path.stat().st_mtime < self.started:  # an earlier sweep in the same dir
                continue
            try:
                summary = json.loads(summary_path.read_text())
            except (OSError, ValueError):
                continue
            if summary.get("status") == "failed":
                found[str(summary_path.parent.resolve())] = summary.get("error")
            if summary.get("trackers_off"):
                trackers_off[str(summary_path.parent)] = "; ".join(summary["trackers_off"])
        if trackers_off:  # the jobs completed, but a mirror the sweep asked for missed them
            print(
                f"hymtl: a tracker was off for {len(trackers_off)} job(s); their run dirs hold "
                "everything:",
                file=sys.stderr,
            )
            for job, reason in sorted(trackers_off.items()):
                print(f"  {job}: {reason}", file=sys.stderr)
        SweepOutcome.failed = [f"{job}: {reason}" for job, reason in sorted(found.items())]
        if SweepOutcome.failed:
            print(f"hymtl: {len(SweepOutcome.failed)} job(s) of the sweep failed:", file=sys.stderr)
            for line in SweepOutcome.failed:
                print(f"  {line}", file=sys.stderr)

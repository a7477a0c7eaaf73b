"""A run directory's life: opening it (the one start-up policy), holding it while a run writes
it, and saying how every way out ended (completed by train(), failed, interrupted)."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hymtl.data.identity import brief, check_same_data, folder_identity
from hymtl.data.splits import split_rows
from hymtl.errors import STARTUP_INTERRUPTED, UserError, display_path, one_line
from hymtl.run.artifacts import (
    remove_stale_temp_files,
    save_checkpoint,
    write_json,
    write_split_csv,
)
from hymtl.run.checkpoint_writer import CheckpointWriter
from hymtl.run.checks import check_config
from hymtl.run.resume import load_resume_checkpoint, resumed_config
from hymtl.run.rundir import (
    ARTIFACT_FILES,
    FINAL_ARTIFACTS,
    SPLIT_FILE,
    RunLock,
    claim_for_new_run,
    data_root_overlap,
    is_locked,
    move_aside,
    read_last_checkpoint,
    read_summary,
    refusal,
    run_state,
)
from hymtl.training import distributed
from hymtl.training.epoch import Progress, make_checkpoint
from hymtl.training.setup import Parts, Runtime

log = logging.getLogger("hymtl.train")


class RunInterrupted(Exception):
    """Ctrl-C or a stop signal ended the run; the message says what was lost and how to go on."""


def hydra_run_dir() -> Path:
    if not HydraConfig.initialized():
        raise ValueError("train(cfg) outside the Hydra CLI needs run_dir=")
    return Path(HydraConfig.get().runtime.output_dir)


def hydra_overrides() -> list[str]:
    """What the user typed (Hydra's task overrides); none when train() is called from code."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


@dataclass
class OpenedRun:
    """What open_run checked and found: the config to run (a resumed run's own), its directory,
    last.pt for resume=, and the data change resume_allow_data_change=true let through."""

    config: DictConfig
    run_dir: Path
    resumed: dict | None = None
    data_change: str | None = None


# The run this process opened before Hydra wrote its files (RunStartGuard), for train() to
# take: the checks are not repeated and last.pt is read once. One slot: one run per process.
_opened_by_callback: list[OpenedRun] = []


def open_run(
    cfg: DictConfig, run_dir, overrides: list[str], hydra_files_written: bool = True
) -> OpenedRun:
    """Everything checked before a run writes anything: the config, the resume target (a
    resumed run's own config, with only what may change, on the same data) and a new run's
    directory, free of any other run (overwrite=true moves that run's files aside). Before
    Hydra wrote .hydra/ and train.log (`hydra_files_written=False`) any file counts as a run's.
    Raises UserError (or NothingToResume) in one line."""
    if not cfg.resume:
        check_config(cfg)
        run_dir = Path(run_dir)
        overlap = data_root_overlap(run_dir, cfg.data.root)
        if overlap:
            raise UserError(overlap)
        if distributed.launched_ranks().is_main:  # other torchrun ranks log outside the run dir
            # Once Hydra has written .hydra/ and train.log of this very run, only hymtl's
            # artifacts say that another run was here.
            if hydra_files_written:
                claim_for_new_run(run_dir, cfg.overwrite, ARTIFACT_FILES)
            else:
                claim_for_new_run(run_dir, cfg.overwrite)
        return OpenedRun(cfg, run_dir)
    run_dir = Path(cfg.resume).expanduser()
    resumed = load_resume_checkpoint(cfg.resume)
    if is_locked(run_dir):
        raise UserError(refusal(run_dir, run_state(run_dir)))
    cfg = resumed_config(resumed, cfg.resume, overrides, cfg)
    check_config(cfg)
    overlap = data_root_overlap(run_dir, cfg.data.root)
    if overlap:
        raise UserError(overlap)
    data = cfg.data
    change = check_same_data(
        resumed.get("data_identity"),
        folder_identity(data.root, data.train_dir, data.val_dir),
        f"resume={display_path(run_dir)}",
        cfg.resume_allow_data_change,
        cfg.evaluation.protocol.value,
    )
    return OpenedRun(cfg, run_dir, resumed, change)


def hand_over(opened: OpenedRun) -> None:
    """RunStartGuard opened the run before Hydra wrote anything: train() takes it as it is."""
    _opened_by_callback[:] = [opened]


def take_opened(cfg: DictConfig) -> OpenedRun | None:
    """The run RunStartGuard opened for this very config, if any (once)."""
    if not (_opened_by_callback and HydraConfig.initialized()):
        return None
    opened = _opened_by_callback.pop()
    if cfg.resume:
        same = opened.resumed is not None and opened.run_dir == Path(cfg.resume).expanduser()
    else:
        same = opened.resumed is None and opened.run_dir.resolve() == hydra_run_dir().resolve()
    return opened if same else None


def new_run_dir_opened() -> Path | None:
    """A new single run's directory, once RunStartGuard let it be written (and before train()
    took it over): a Ctrl-C in between marks it interrupted."""
    if _opened_by_callback and _opened_by_callback[0].resumed is None:
        return _opened_by_callback[0].run_dir
    return None


def start_run(
    cfg: DictConfig, run_dir: str | Path | None, overrides: list[str] | None
) -> OpenedRun:
    """train()'s start: the run RunStartGuard opened, else open_run now (train() from code)."""
    opened = take_opened(cfg) if run_dir is None else None
    if opened is None:
        typed = hydra_overrides() if overrides is None else overrides
        if run_dir is None and not cfg.resume:  # a resumed run's directory is the run's own
            run_dir = hydra_run_dir()
        opened = open_run(cfg, run_dir, typed)
    if opened.data_change:
        log.warning(
            "resuming on changed images (resume_allow_data_change=true): %s; recorded in "
            "summary.json data_changes",
            opened.data_change,
        )
    opened.run_dir.mkdir(parents=True, exist_ok=True)
    return opened


class RunOutcome:
    """Holds the run dir while a run writes it, and makes every way out say how it ended:
    Ctrl-C/SIGTERM/SIGHUP -> summary.json `interrupted` and RunInterrupted with the way on; any
    error -> `failed` with its one-line reason. A resumed run's summary.json keeps describing
    it until training starts changing the run. Under torchrun only rank 0 writes."""

    def __init__(self, run_dir: Path, resumed: dict | None) -> None:
        self.run_dir = run_dir
        self.owner = distributed.launched_ranks().is_main
        self.writes_summary = self.owner and not resumed
        self.stage = "start-up"
        self.progress = Progress()
        self.trackers = None  # once opened, told how the run ended, as summary.json is
        self.checkpoints = CheckpointWriter()  # the epochs' best.pt and last.pt

    def __enter__(self) -> RunOutcome:
        self.lock = RunLock(self.run_dir) if self.owner else None
        if self.lock:  # what a write killed midway left: no other process can be writing now
            removed = remove_stale_temp_files(self.run_dir, ARTIFACT_FILES)
            if removed:
                log.info("removed %s, left by a write that was killed", ", ".join(removed))
        self.previous_handlers = catch_stop_signals()
        return self

    def training(self, progress: Progress) -> None:
        raise_pending_stop()
        self.stage, self.progress, self.writes_summary = "training", progress, self.owner

    def finishing(self) -> None:
        raise_pending_stop()
        self.stage = "the final artifacts"

    def __exit__(self, kind, error, traceback) -> bool:
        failed_write = self.wait_for_checkpoints(error)
        restore_signals(self.previous_handlers)
        if self.lock:
            self.lock.release()
        if failed_write is not None:
            kind, error = type(failed_write), failed_write
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            stop_handled()
            where = f"epoch {self.progress.epoch}" if self.stage == "training" else self.stage
            interrupted = RunInterrupted(interrupted_message(where, self.run_dir))
            self.write_status("interrupted", str(interrupted))
            raise interrupted from None
        if kind is not None and issubclass(kind, Exception):
            reason = str(error) if isinstance(error, UserError) else one_line(error)
            self.write_status("failed", reason)
        if failed_write is not None:
            raise failed_write
        return False

    def wait_for_checkpoints(self, error: BaseException | None) -> BaseException | None:
        """Every checkpoint handed over is on disk before the run dir is let go of and last.pt
        is read for the way on; a second Ctrl-C meanwhile (under a second) waits too. A write
        that failed: returned when nothing else ended the run, else logged beside it."""
        while True:
            try:
                self.checkpoints.wait()
                return None
            except KeyboardInterrupt:
                continue
            except Exception as failed:
                if error is None:
                    return failed
                log.error("a checkpoint could not be written either: %s", one_line(failed))
                return None

    def write_status(self, status: str, reason: str) -> None:
        if self.writes_summary:
            write_json(self.run_dir / "summary.json", {"status": status, "error": reason})
        elif self.owner:  # a resumed run, not changed yet: summary.json still says how it ended
            status = (read_summary(self.run_dir) or {}).get("status", status)
        if self.trackers is not None:
            self.trackers.finish(status, self.run_dir, None, reason)


def interrupted_before_training() -> str:
    """The one line for a Ctrl-C before train() ran; a run dir Hydra already made says so too."""
    message = STARTUP_INTERRUPTED
    run_dir = new_run_dir_opened()
    if run_dir is not None and run_dir.is_dir() and not (run_dir / "summary.json").exists():
        write_json(run_dir / "summary.json", {"status": "interrupted", "error": message})
    return message


def interrupted_message(stage: str, run_dir: Path) -> str:
    """What was lost and how to go on, for an interrupt at any stage."""
    shown = display_path(run_dir)
    done = read_last_checkpoint(run_dir)
    if done is None:
        return (
            f"interrupted during {stage}, before any training; nothing to resume: run the "
            f"command again (add overwrite=true to reuse {shown})"
        )
    return (
        f"interrupted during {stage}; last.pt holds epoch {done['epoch']}. "
        f"Resume with: python -m hymtl.train resume={shown}"
    )


# Stop signals received and not yet seen to end the run. A KeyboardInterrupt raised while
# Python runs a finalizer or a weakref callback (a DataLoader's, a thread pool's) is printed
# as "Exception ignored" and lost: the run checks this at every stage and epoch instead.
_pending_stops: list[int] = []


# What torch says when a DataLoader worker process died under it (the OOM killer, a `kill`).
WORKER_DEATHS = ("is killed by signal", "exited unexpectedly")


@contextlib.contextmanager
def worker_deaths_as_one_line(run_dir: Path):
    """A data-loading worker killed under the run is not a bug in the user's input or in
    hymtl: one line saying so and how to go on, instead of torch's traceback."""
    try:
        yield
    except RuntimeError as error:
        if "DataLoader worker" not in str(error) or not any(w in str(error) for w in WORKER_DEATHS):
            raise
        raise UserError(
            f"{one_line(error)} (a data-loading process died, often for lack of memory): lower "
            f"num_workers= or batch_size=, then resume with: python -m hymtl.train "
            f"resume={display_path(run_dir)}"
        ) from None


def raise_keyboard_interrupt(signum, frame):
    _pending_stops.append(signum)
    raise KeyboardInterrupt


def raise_pending_stop() -> None:
    """Raise the KeyboardInterrupt of a stop signal that something swallowed."""
    if _pending_stops:
        _pending_stops.clear()
        raise KeyboardInterrupt


def stop_handled() -> None:
    """The stop signal's KeyboardInterrupt reached its handler: nothing is pending."""
    _pending_stops.clear()


def catch_stop_signals() -> dict:
    """SIGTERM (a scheduler, `kill`) and SIGHUP (the terminal closed) raise KeyboardInterrupt,
    as Ctrl-C does: the run ends `interrupted`, with the way to resume it. A SIGHUP ignored
    from the start (nohup) stays ignored. Returns the handlers replaced, for restore_signals."""
    replaced = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        replaced[signum] = signal.signal(signum, raise_keyboard_interrupt)
    return replaced


def restore_signals(replaced: dict) -> None:
    for signum, handler in replaced.items():
        if handler is not None:  # None: a handler set outside Python, which cannot be restored
            signal.signal(signum, handler)


def start_training(cfg, parts: Parts, progress: Progress, run_dir: Path, resumed) -> None:
    """What must be on disk before the first epoch: last.pt of epoch 0 for a new run (so a run
    killed in its first epoch can resume), and, when a completed run is extended, its final
    artifacts moved aside (they describe fewer epochs; a run stopped mid-extension must never
    read as completed)."""
    if not resumed:
        write_split_csv(run_dir / SPLIT_FILE, split_rows(parts.splits))
        save_checkpoint(run_dir / "last.pt", make_checkpoint(cfg, parts, progress, 0))
    elif (read_summary(run_dir) or {}).get("status") == "completed":
        moved = move_aside(run_dir, list(FINAL_ARTIFACTS))
        log.info("extending a completed run: its final artifacts are now in %s", moved)


def result_line(summary: dict) -> str:
    """The run's result in one line, saying which images measured each number and whether
    they also chose it."""
    best = summary["best_model"]
    if "test" not in summary:
        return (
            f"best val acc {best['accuracy']:.4f} at epoch {summary['best_epoch']}, macro F1 "
            f"{best['macro']['f1']:.4f} (epoch chosen on these val images: selection-biased)"
        )
    test = summary["test"]
    return (
        f"test acc {test['accuracy']:.4f}, macro F1 {test['macro']['f1']:.4f} on "
        f"{test['n']} test images never used to choose; weights of epoch "
        f"{summary['best_epoch']}, chosen by {summary.get('selection_metric', 'val_acc')} on the "
        f"select images (select acc {best['accuracy']:.4f})"
    )


def run_facts(runtime: Runtime, parts: Parts, progress: Progress, trackers, resumed, started):
    """What summary.json says about this invocation, beside the metrics."""
    return {
        "world_size": runtime.ranks.world_size,
        "seconds_total": time.time() - started,  # this invocation; epochs: metrics.csv
        "resumed_after_epoch": resumed["epoch"] if resumed else None,
        "stopped_early_at": progress.stopped_early_at,
        "data_identity": brief(parts.splits.identity),
        "data_changes": progress.data_changes,
        "trackers_off": trackers.off,  # logger= asked for them; the run dir has it all
    }

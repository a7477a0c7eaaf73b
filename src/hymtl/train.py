"""The one training loop: `python -m hymtl.train [overrides]` or `train(cfg, run_dir)` from code.

The recipe, read as torchvision's references/classification reads: open the run, build its
parts, restore or start, fit (train_one_epoch, evaluate, the scheduler's step, a checkpoint per
epoch), finish (predictions, plots, summary.json last).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m hymtl.train`, before this copy imports anything heavy
    # Run the copy of this module imported as `hymtl.train`, not this `__main__` one: launchers
    # that pickle the task function (joblib, submitit) can then refer to it by name. Ctrl-C
    # while it imports torch is one line (import_command); cli() ends the process.
    from hymtl.cli.process_exit import import_command

    import_command("hymtl.train", "hymtl").cli()

import logging
import sys
import time
from pathlib import Path
from typing import NoReturn

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from tqdm import tqdm

from hymtl import errors
from hymtl.cli.app import literal_values
from hymtl.cli.process_exit import run_as_process
from hymtl.config.compose import CheckedComposing, RefusedComposition, composed, to_plain_dict
from hymtl.config.schema import register_configs
from hymtl.data import make_loader
from hymtl.data.splits import evaluation_block
from hymtl.errors import UserError, display_path, one_line
from hymtl.run.artifacts import (
    MetricsLog,
    build_summary,
    classification_metrics,
    load_checkpoint,
    write_json,
    write_plots,
    write_val_predictions,
)
from hymtl.run.checkpoint_writer import CheckpointWriter
from hymtl.run.lifecycle import (
    RunInterrupted,
    RunOutcome,
    catch_stop_signals,
    hydra_run_dir,
    interrupted_before_training,
    raise_pending_stop,
    result_line,
    run_facts,
    start_run,
    start_training,
    stop_handled,
    worker_deaths_as_one_line,
)
from hymtl.run.resolvers import register_resolvers
from hymtl.run.resume import NothingToResume, restore
from hymtl.run.sweep import (
    continue_command,
    prepare_sweep_job,
    record_failed_job,
    sweep_failures,
)
from hymtl.tracking import open_trackers
from hymtl.training import distributed
from hymtl.training.calibration import calibration_of
from hymtl.training.epoch import (
    Progress,
    best_checkpoint,
    continue_after_early_stop,
    epoch_row,
    log_epoch,
    make_checkpoint,
    non_finite_tensor,
    selection_metric,
)
from hymtl.training.features import applied_augmentation
from hymtl.training.loop import NonFiniteLoss, evaluate, train_one_epoch
from hymtl.training.losses import evaluation_criterion, is_better, should_stop
from hymtl.training.regularizers import weight_statistics
from hymtl.training.runtime import END_OF_RUN_IMPORTS, import_in_background
from hymtl.training.setup import Parts, Runtime, build_parts, setup_runtime

log = logging.getLogger("hymtl.train")

# What @hydra.main needs before it composes: hymtl's resolvers and typed schema. Done when this
# module is imported, because launchers (joblib, submitit) import it in their worker processes.
register_resolvers()
register_configs()


def train(
    cfg: DictConfig, run_dir: str | Path | None = None, overrides: list[str] | None = None
) -> dict:
    """Fine-tune cfg.model on cfg.data; write metrics, summary, plots and checkpoints to run_dir.
    With cfg.resume=RUN_DIR, continue that run from RUN_DIR/last.pt, in RUN_DIR; `overrides`
    (default: what was typed on Hydra's command line) may extend it with epochs=N and may
    change nothing else."""
    started = time.time()
    opened = start_run(cfg, run_dir, overrides)
    cfg, run_dir, resumed = opened.config, opened.run_dir, opened.resumed
    with RunOutcome(run_dir, resumed) as outcome:
        outcome.trackers = trackers = open_trackers(cfg, run_dir, resumed)
        runtime = setup_runtime(cfg)
        parts = build_parts(cfg, runtime)
        progress = restore(parts, resumed, run_dir, runtime) if resumed else Progress()
        if opened.data_change:
            change = {"after_epoch": resumed["epoch"], "change": opened.data_change}
            progress.data_changes.append(change)
        progress.tracking = trackers.run_ids()
        if outcome.owner:
            start_training(cfg, parts, progress, run_dir, resumed)
        outcome.training(progress)
        with MetricsLog(run_dir / "metrics.csv" if outcome.owner else None) as metrics:
            fit(cfg, parts, progress, run_dir, runtime, metrics, trackers, outcome.checkpoints)
        if not outcome.owner:
            return {"status": "completed", "best_val_acc": progress.best["val_acc"]}
        outcome.finishing()
        facts = run_facts(runtime, parts, progress, trackers, resumed, started)
        summary = finish(cfg, parts, progress, run_dir, runtime, metrics.rows, facts, outcome)
        trackers.finish("completed", run_dir, summary)
    log.info("%s; run dir %s", result_line(summary), display_path(run_dir))
    return summary


def fit(
    cfg,
    parts: Parts,
    progress: Progress,
    run_dir: Path,
    runtime: Runtime,
    metrics,
    trackers,
    checkpoints: CheckpointWriter,
) -> None:
    """The epoch loop: train, evaluate, step the scheduler, log a row, checkpoint (written
    while the next epoch trains; the last epoch's while finish draws). best.pt is the epoch
    early_stopping.metric chose (the one selection metric, for early stopping too)."""
    if not continue_after_early_stop(cfg, progress, metrics.rows):
        return
    import_in_background(END_OF_RUN_IMPORTS)  # during the first epoch
    quiet = None if runtime.ranks.is_main else True
    for epoch in tqdm(range(progress.start_epoch, cfg.epochs + 1), desc="epochs", disable=quiet):
        raise_pending_stop()
        progress.epoch, started = epoch, time.time()
        lr = parts.optimizer.param_groups[0]["lr"]
        with worker_deaths_as_one_line(run_dir):
            trained = train_epoch(cfg, parts, runtime, epoch, run_dir)
            progress.last_eval = val = validate(parts, runtime, f"epoch {epoch}/{cfg.epochs} val")
        parts.scheduler.step()
        row = epoch_row(epoch, trained, val, lr, time.time() - started)
        checkpoints.wait()  # the last epoch's files on disk before this epoch's row
        metrics.append(row)
        trackers.log_epoch(row)
        save_epoch(cfg, parts, progress, run_dir, runtime, row, checkpoints)
        log_epoch(row, cfg.epochs)
        if runtime.auto_threads is not None:
            runtime.auto_threads.after_epoch(epoch)
        if stops_early(cfg, progress, metrics.rows):
            break


def train_epoch(cfg, parts: Parts, runtime: Runtime, epoch: int, run_dir: Path) -> dict:
    """One epoch of training, summed over every process; the ways it can fail, in one line."""
    if hasattr(parts.train_loader.sampler, "set_epoch"):  # DistributedSampler, DecodeAhead
        parts.train_loader.sampler.set_epoch(epoch)  # a new shuffle each epoch
    try:
        stats = train_one_epoch(
            parts.step_model,
            parts.train_loader,
            criterion=parts.criterion,
            regularizer=parts.regularizer,
            optimizer=parts.optimizer,
            scaler=parts.scaler,
            device=runtime.device,
            autocast=runtime.autocast,
            channels_last=parts.channels_last,
            desc=f"epoch {epoch}/{cfg.epochs} train",
            progress=runtime.ranks.is_main,
        )
        bad_tensor = non_finite_tensor(parts.model)
        if bad_tensor:
            raise NonFiniteLoss(f"weights became non-finite ({bad_tensor})")
    except ValueError as error:
        if "Expected more than 1 value per channel" not in str(error):
            raise
        raise UserError(
            f"BatchNorm cannot train on one value per channel (batch_size={cfg.batch_size}, "
            f"data.image_size={cfg.data.image_size}): use batch_size>=2 or larger images"
        ) from None
    except NonFiniteLoss as error:
        raise NonFiniteLoss(
            f"{error} in epoch {epoch}; last good checkpoint kept: "
            f"{display_path(run_dir)}/last.pt (epoch {epoch - 1}); lower optimizer.lr= or the "
            "penalty's λ"
        ) from None
    keys = ("loss_sum", "penalty_sum", "correct", "seen")
    summed = distributed.sum_across_ranks([stats[k] for k in keys], runtime.ranks, runtime.device)
    distributed.sync_buffers(parts.model, runtime.ranks)  # BatchNorm statistics: rank 0's
    return dict(zip(keys, summed))


def validate(parts: Parts, runtime: Runtime, desc: str) -> dict:
    """The epoch's weights on the images that choose the epoch (all processes' shards)."""
    val = evaluate(
        parts.eval_model,
        parts.val_loader,
        criterion=evaluation_criterion(),  # val_loss: plain cross-entropy, whatever loss.* says
        device=runtime.device,
        autocast=runtime.autocast,
        channels_last=parts.channels_last,
        desc=desc,
        progress=runtime.ranks.is_main,
    )
    return distributed.gather_evaluation(val, runtime.ranks)


def save_epoch(cfg, parts: Parts, progress: Progress, run_dir: Path, runtime, row, checkpoints):
    """best.pt when the selection metric improved (a tie keeps the earlier epoch, as early
    stopping counts it), then last.pt; only rank 0 writes the run dir."""
    metric, epoch = selection_metric(cfg), row["epoch"]
    improved = is_better(row[metric], progress.best["value"], metric)
    if improved:
        val = progress.last_eval
        progress.best = {"val_acc": val["acc"], "epoch": epoch, "eval": val, "value": row[metric]}
    if runtime.ranks.is_main:
        checkpoint = make_checkpoint(cfg, parts, progress, epoch)
        files = [(run_dir / "best.pt", best_checkpoint(cfg, checkpoint))] if improved else []
        checkpoints.write([*files, (run_dir / "last.pt", checkpoint)])


def stops_early(cfg, progress: Progress, rows: list[dict]) -> bool:
    if not should_stop(rows, cfg.early_stopping, progress.patience_since):
        return False
    progress.stopped_early_at = progress.epoch
    log.info(
        "early stopping after epoch %d: %s has not improved for %d epochs",
        progress.epoch,
        selection_metric(cfg),
        cfg.early_stopping.patience,
    )
    return True


def finish(cfg, parts: Parts, progress: Progress, run_dir: Path, runtime, rows, extra, outcome):
    """Predictions, plots, then summary.json last: `completed` means every artifact exists.
    The last epoch's checkpoints are written meanwhile, and waited for before they are read
    (the test evaluation) and before summary.json."""
    summary = build_summary(
        cfg,
        to_plain_dict(cfg),
        run_dir,
        parts.splits,
        runtime.device,
        runtime.precision,
        progress.best,
        progress.last_eval,
    )
    summary.update(extra)
    summary["selection_metric"] = selection_metric(cfg)  # chose best.pt; drove early stopping
    summary["best_val_loss"] = progress.best["eval"]["loss"]  # plain cross-entropy
    cached = bool(cfg.model.freeze_backbone and cfg.feature_cache)
    summary["augmentation_applied"] = applied_augmentation(cfg.augment.name.value, cached)
    summary["threads"] = torch.get_num_threads()
    if runtime.auto_threads is not None:  # threads=auto: each count it chose, and why
        summary["threads_auto"] = runtime.auto_threads.choices
    summary["seconds_per_epoch"] = sum(r["seconds"] for r in rows) / len(rows)
    splits, classes = parts.splits, parts.splits.classes
    write_val_predictions(
        run_dir / "val_predictions.csv", splits.val.samples, classes, progress.best["eval"]
    )
    if splits.test is None:
        reported = ("val", splits.val, progress.best["eval"])
        summary["selection"] = (
            "best_val_acc and best_model: the epoch was chosen on val/ and is measured on val/, "
            "so they are selection-biased; evaluation=holdout or kfold holds out a test set"
        )
    else:
        outcome.checkpoints.wait()
        summary["final_weights"] = weight_statistics(parts.model)  # before best.pt replaces them
        test_eval = evaluate_selected_on_test(cfg, parts, run_dir, runtime)
        reported = ("test", splits.test, test_eval)
        summary["evaluation"] = evaluation_block(to_plain_dict(cfg.evaluation), splits)
        summary["test"] = classification_metrics(test_eval["targets"], test_eval["preds"], classes)
        summary["test"]["epoch"] = progress.best["epoch"]  # chosen on the select images
        write_val_predictions(
            run_dir / "test_predictions.csv", splits.test.samples, classes, test_eval
        )
    summary["calibration"] = calibration_of(reported)
    run_name = f"{cfg.model.name} · regularizer={cfg.regularizer.name} · seed={cfg.seed}"
    write_plots(summary, rows, reported, cfg, run_dir, run_name)
    outcome.checkpoints.wait()
    if "final_weights" not in summary:
        # Measured once the last checkpoints are on disk: beside the writer thread its ~190
        # small kernels queue for the GIL (~0.4 s instead of ~0.1 s on 2 cores).
        summary["final_weights"] = weight_statistics(parts.model)
    write_json(run_dir / "summary.json", summary)
    return summary


def evaluate_selected_on_test(cfg, parts: Parts, run_dir: Path, runtime: Runtime) -> dict:
    """The selected weights (best.pt, chosen on the select images) on the test images: the one
    time the test images are used. The model is the plain module (rank 0, full test set)."""
    parts.model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
    pin = runtime.device.type == "cuda"
    loader = make_loader(parts.splits.test, cfg.batch_size, runtime.num_workers, False, 0, pin)
    return evaluate(
        parts.model,
        loader,
        criterion=evaluation_criterion(),
        device=runtime.device,
        autocast=runtime.autocast,
        channels_last=cfg.channels_last,
        desc="test",
    )


def run_job(cfg: DictConfig, in_sweep: bool) -> float:
    """One run, or one job of a sweep (which may keep or resume what its directory holds)."""
    if not in_sweep:
        return train(cfg)["best_val_acc"]
    to_train, kept_result = prepare_sweep_job(cfg, hydra_run_dir())
    return kept_result if to_train is None else train(to_train)["best_val_acc"]


@hydra.main(version_base="1.3", config_path="pkg://hymtl.conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """One run (or one job of a sweep); returns the best val accuracy for sweepers. A job that
    fails leaves its reason in its summary.json and, in a sweep, lets the other jobs go on."""
    composed()  # as RunStartGuard does, for a config that leaves that callback out
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    # Under torchrun the terminal is rank 0's: the other ranks, which fail alike, stay quiet.
    speaks = distributed.launched_ranks().is_main
    try:
        return run_job(cfg, in_sweep)
    except NothingToResume as message:
        if speaks:
            errors.say("hymtl", str(message))
        return float("nan")
    except RunInterrupted as interrupted:
        if speaks:
            errors.say("hymtl", str(interrupted))
            if in_sweep:
                errors.say("hymtl", f"continue the whole sweep with: {continue_command()}")
        sys.exit(errors.INTERRUPTED)
    except UserError as error:
        reason = str(error)
    except Exception as error:
        if not in_sweep:
            raise  # a bug, not bad input: the traceback is what a bug report needs
        log.exception("job failed")
        reason = one_line(error)
    if speaks:
        errors.error("hymtl", reason)
    if not in_sweep:
        sys.exit(errors.USAGE)
    record_failed_job(hydra_run_dir(), reason)  # SweepOutcome lists it at the end
    return float("nan")  # sweepers (Optuna) see a failed trial


def cli() -> NoReturn:
    """`python -m hymtl.train` and `hymtl-train`: the whole process (cli.process_exit)."""
    run_as_process(command_line)


def command_line() -> None:
    """Exit status 1 if any job of a sweep failed. Overrides Hydra would refuse (in any job of
    a sweep, or under `--cfg job` too) are one `hymtl: error:` line and exit status 2 before
    anything is created."""
    # SIGTERM and SIGHUP are Ctrl-C from the very start, not only once training runs.
    catch_stop_signals()
    try:
        # A value Hydra's grammar cannot read (a path with `=`, `[`, `'`, non-ASCII letters)
        # is quoted, as hymtl predict/evaluate/export do: paths work as typed.
        argv = literal_values(sys.argv[1:])
        sys.argv = [sys.argv[0], *argv]  # Hydra reads its arguments from sys.argv
        with CheckedComposing(argv):
            main()
    except RefusedComposition as problem:
        if distributed.launched_ranks().is_main:
            errors.error("hymtl", str(problem))
        sys.exit(errors.USAGE)
    except KeyboardInterrupt:  # before train() took over: composing, launching, Hydra's files
        stop_handled()
        sweep_command = continue_command()
        if sweep_command:  # between jobs, or in a launcher's worker: the sweep goes on from here
            errors.say("hymtl", f"interrupted; continue the sweep with: {sweep_command}")
        else:
            errors.say("hymtl", interrupted_before_training())
        sys.exit(errors.INTERRUPTED)
    if sweep_failures():
        sys.exit(errors.FAILED)

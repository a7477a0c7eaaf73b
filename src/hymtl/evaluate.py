"""Recompute a trained run's metrics on a split, from its checkpoint alone.

    hymtl evaluate ckpt=RUN_DIR/best.pt data.root=/path/to/images [split=val] [out=DIR]
                   [precision=fp32|bf16|fp16|auto]

Uses the run's own evaluation transform, class names and rules for unusable files; the split's
class folders must match the checkpoint's classes. precision=fp32 (the default) is exact and
repeatable, what an exported file computes; auto is the run's own precision (bf16 autocast on
bf16-capable hardware, as in training). The report records it (`precision`). Prints
accuracy and macro F1 and writes OUT/evaluation-SPLIT-TIME.json, a new file per call (the same
metrics as summary.json's best_model; OUT defaults to RUN_DIR/evaluate). A Hydra app
(hymtl.cli.app): keys and types in hymtl.config.schema's EvaluateConfig, `--help` lists them;
`-m ckpt=A/best.pt,B/best.pt` evaluates each.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig

from hymtl.cli.app import os_problem, run_command, writable_folder_problem
from hymtl.cli.process_exit import run_as_process
from hymtl.errors import UserError, display_path
from hymtl.inference.evaluating import evaluate_checkpoint
from hymtl.run.artifacts import write_json

USAGE = (
    "hymtl evaluate ckpt=RUN_DIR/best.pt data.root=/path [split=val] [out=DIR] [device=auto] "
    "[precision=fp32]"
)


def report_path(out: Path, split: str) -> Path:
    """A new file per call, so evaluating again (another split, other data) keeps the earlier
    reports; microseconds keep two calls in the same second apart."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return out / f"evaluation-{split.replace('/', '_')}-{stamp}.json"


def run(cfg: DictConfig) -> None:
    """One evaluation job: a checkpoint on a split, one new report in OUT (UserError: refused)."""
    if cfg.batch_size < 1:
        raise UserError(f"batch_size={cfg.batch_size} must be >= 1")
    out = Path(cfg.out or Path(cfg.ckpt).parent / "evaluate").expanduser()
    if os.path.lexists(out) and not out.is_dir():
        raise UserError(f"out={display_path(out)} is a file, not a folder; choose another out=")
    problem = writable_folder_problem(out)  # before the work, not after it
    if problem:
        raise UserError(f"out={display_path(out)}: {problem}")
    report = evaluate_checkpoint(
        cfg.ckpt, cfg.data.root, cfg.split, cfg.device, cfg.batch_size, cfg.precision
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as refusal:
        raise UserError(os_problem(refusal, out)) from None
    path = report_path(out, cfg.split)
    write_json(path, report)
    print(
        f"{display_path(report['folder'])}: {report['n']} images, accuracy "
        f"{report['accuracy']:.4f}, macro F1 {report['macro']['f1']:.4f} -> {display_path(path)}"
    )


def main(argv: list[str] | None = None) -> int:
    """`hymtl evaluate ARGV` (default: the command line); returns the exit status."""
    return run_command("evaluate", run, USAGE, argv)


def cli() -> NoReturn:
    run_as_process(main)  # the whole process: cli.process_exit


if __name__ == "__main__":
    cli()

"""What a run leaves in its directory: summary.json, the predictions and split CSVs, the
checkpoints, the pictures; and the check that a finished run directory tells one story
(check_run_dir). Every file is written so that a kill mid-write never leaves a corrupt one
behind. The files' names: run/files.py; metrics.csv: run/metrics.py."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torchvision
from hydra.core.hydra_config import HydraConfig

import hymtl
from hymtl import display_path

# The names of the run dir's files (run/files.py); metrics.csv's log and the metrics computed
# from predictions (run/metrics.py); where a run came from (run/provenance.py). Those marked
# F401 are not used here: they are imported from here (train.py, evaluate.py, report.py,
# run/resume.py, the trackers, scripts/check_run_dir.py and the tests).
from hymtl.run.files import (
    CALIBRATION_PLOT,
    CONFUSION_MATRIX_PLOT,
    CURVES_PLOT,
    ERRORS_PLOT,
    LAST_CHECKPOINT,
    METRICS_FILE,
    PREDICTIONS_PLOT,
    RUN_ARTIFACTS,
    SPLIT_FILE,
    SUMMARY_FILE,
    TEST_PREDICTIONS_FILE,
    VAL_PREDICTIONS_FILE,
)
from hymtl.run.metrics import (
    METRIC_COLUMNS,  # noqa: F401
    MetricsLog,  # noqa: F401
    classification_metrics,
    read_metrics,
    selected_epoch,
)
from hymtl.run.provenance import (
    command_line,
    data_fingerprint,
    git_state,
    job_command_line,
)

log = logging.getLogger("hymtl.run.artifacts")


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same directory (`.NAME.<random>.tmp`), then rename
    over `path`. A process killed mid-write leaves that file: remove_stale_temp_files."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; run artifacts are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temp_files(run_dir: Path, names) -> list[str]:
    """Remove what atomic_write left in `run_dir` of the files `names` when a process was killed
    mid-write: regular files named `.NAME.<anything>.tmp`, nothing else. Only for the process
    that holds the run dir's lock (rundir.RunLock): no other can be writing them. Returns the
    names removed."""

    def left_by_atomic_write(file_name: str) -> bool:  # `.NAME.` + mkstemp's letters + `.tmp`
        return any(
            file_name.startswith(f".{name}.")
            and file_name.endswith(".tmp")
            and len(file_name) >= len(f".{name}..tmp")
            for name in names
        )

    removed = []
    for path in sorted(Path(run_dir).iterdir()):
        if left_by_atomic_write(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def write_json(path: Path, data: Any) -> None:
    def write(tmp):
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")

    atomic_write(path, write)


PREDICTION_COLUMNS = ("path", "true", "predicted", "probability", "correct")  # then p_<class>


def write_val_predictions(path: Path, samples, classes, eval_result) -> None:
    """val_predictions.csv: one row per val image (same order as the val split), so two runs can
    be compared image by image (McNemar) without rerunning them: path, true, predicted,
    probability (of the predicted class), correct (1/0), then p_<class> for every class (the
    columns `hymtl predict` writes, with what only labelled images have). Paths that are not
    valid UTF-8 are written with `\\xNN` escapes (data.display_path), as predict writes them."""
    every_class = eval_result.get("probabilities")  # absent: resumed from an older hymtl

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            per_class = [f"p_{name}" for name in classes] if every_class else []
            writer.writerow([*PREDICTION_COLUMNS, *per_class])
            columns = (eval_result["targets"], eval_result["preds"], eval_result["probs"])
            for index, ((file, _), target, pred, prob) in enumerate(zip(samples, *columns)):
                row = [classes[target], classes[pred], f"{prob:.6f}", int(target == pred)]
                probabilities = [f"{p:.6f}" for p in every_class[index]] if every_class else []
                writer.writerow([display_path(file), *row, *probabilities])

    atomic_write(path, write)


def write_split_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """split.csv: path (relative to data.root), label, role (train, select or test) for every
    image the run uses (hymtl/data/splits.py)."""

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "role"])
            writer.writerows(rows)

    atomic_write(path, write)


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def build_summary(cfg, plain_config, run_dir, splits, device, precision, best, last_eval) -> dict:
    classes = splits.classes
    return {
        "status": "completed",
        "run_dir": str(run_dir),
        "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None,
        "classes": classes,
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "data_layout": splits.layout,
        "skipped_files": [{"path": p, "reason": r} for p, r in splits.skipped],
        "device": str(device),
        "precision": precision,
        "epochs": cfg.epochs,
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "best_model": classification_metrics(
            best["eval"]["targets"], best["eval"]["preds"], classes
        ),
        "final_model": classification_metrics(last_eval["targets"], last_eval["preds"], classes),
        "versions": {
            "hymtl": hymtl.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": sys.version.split()[0],
        },
        "provenance": {
            "command": command_line(),
            "job_command": job_command_line(),
            "git": git_state(Path(hymtl.__file__).parent),
            "data_fingerprint": data_fingerprint(splits),
        },
        "config": plain_config,
    }


def write_plots(summary, rows, reported, cfg, run_dir: Path, run_name: str) -> None:
    """Curves over all epochs; every per-image picture (confusion matrix, prediction grid, error
    gallery, reliability diagram) from the selected (best.pt) weights on the reported images:
    `reported` = (name, dataset, evaluation), the test images where there are some, else val.

    Training is over when this runs: a picture that cannot be drawn (an unwritable path, a
    matplotlib error) is one warning naming it and why, and an entry of summary["plots_failed"]
    ({"file", "reason"}); the other pictures are still drawn and the run still completes."""
    # matplotlib: imported to draw, not at start-up
    from hymtl.training import plots, prediction_grid

    failed = summary["plots_failed"] = []

    def draw(file_name: str, picture) -> None:
        try:
            picture(run_dir / file_name)
        except Exception as error:  # never KeyboardInterrupt: Ctrl-C still interrupts the run
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            log.warning("could not draw %s (%s); the run completes without it", file_name, reason)
            failed.append({"file": file_name, "reason": reason})

    draw(CURVES_PLOT, lambda path: plots.plot_curves(rows, path, run_name, summary["best_epoch"]))
    name, dataset, result = reported
    metrics = summary["test" if name == "test" else "best_model"]
    epoch = f"epoch {summary['best_epoch']} of {len(rows)}"
    if name == "test":
        which = (
            f"test images, weights of {epoch} (chosen on select) (acc {metrics['accuracy']:.4f})"
        )
    else:
        which = f"val, best {epoch} (chosen on val) (acc {metrics['accuracy']:.4f})"
    classes = summary["classes"]
    draw(
        CONFUSION_MATRIX_PLOT,
        lambda path: plots.plot_confusion_matrix(metrics["confusion_matrix"], classes, path, which),
    )
    grid = (dataset, classes, result)
    mean, std = cfg.data.mean, cfg.data.std
    grid_title = f"{name} predictions, {which} (red = wrong) · {run_name}"
    draw(
        PREDICTIONS_PLOT,
        lambda path: prediction_grid.write_prediction_grid(
            *grid, cfg.grid_images, mean, std, path, grid_title
        ),
    )
    errors_title = f"{name} errors, {which} · {run_name}"
    draw(
        ERRORS_PLOT,
        lambda path: prediction_grid.write_prediction_grid(
            *grid, 8, mean, std, path, errors_title, errors_only=True
        ),
    )
    if summary.get("calibration"):
        calibration_title = f"calibration: {which}\n{run_name}"
        draw(
            CALIBRATION_PLOT,
            lambda path: plots.plot_reliability(summary["calibration"], path, calibration_title),
        )


def check_run_dir(
    run_dir: Path,
    epochs: int,
    min_accuracy: float = 0.0,
    n_val: int | None = None,
    skipped: int | None = None,
) -> list[str]:
    """Problems with a finished run directory ([] when it is complete and self-consistent):
    every artifact present, status completed, one metrics row per epoch, and the summary, the
    confusion matrix, metrics.csv, val_predictions.csv and last.pt telling the same story."""
    run_dir = Path(run_dir)
    problems = [
        f"{name} missing or empty"
        for name in RUN_ARTIFACTS
        if not (run_dir / name).is_file() or (run_dir / name).stat().st_size == 0
    ]
    if problems:
        return problems
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    n = sum(map(sum, summary["best_model"]["confusion_matrix"]))
    expectations = [(summary.get("status") == "completed", f"status is {summary.get('status')}")]
    expectations += record_expectations(run_dir, summary, epochs)
    expectations += [
        (summary["best_val_acc"] >= min_accuracy, f"best val accuracy < {min_accuracy}"),
        (n_val is None or n == n_val, f"{n} val images evaluated, expected {n_val}"),
        (
            skipped is None or len(summary["skipped_files"]) == skipped,
            f"{len(summary['skipped_files'])} files skipped, expected {skipped}",
        ),
    ]
    expectations += split_expectations(run_dir, summary)
    return [problem for holds, problem in expectations if not holds]


def differs(a: float, b: float) -> bool:
    return abs(a - b) > 1e-9


def record_expectations(run_dir: Path, summary: dict, epochs: int) -> list[tuple[bool, str]]:
    """The summary's best and final model against metrics.csv (one row per epoch, the selected
    epoch), the confusion matrix, val_predictions.csv and last.pt."""
    rows = read_metrics(run_dir / METRICS_FILE)
    best = summary["best_model"]
    matrix = best["confusion_matrix"]
    n = sum(map(sum, matrix))
    trace_accuracy = sum(matrix[i][i] for i in range(len(matrix))) / n
    per_image = read_csv_rows(run_dir / VAL_PREDICTIONS_FILE)
    return [
        (
            [row["epoch"] for row in rows] == list(range(1, epochs + 1)),
            f"metrics.csv has epochs {[row['epoch'] for row in rows]}, expected 1..{epochs}",
        ),
        (n == summary["n_val"] == best["n"], f"{n} images in the matrix, n_val {summary['n_val']}"),
        (
            not differs(trace_accuracy, summary["best_val_acc"]),
            f"confusion-matrix accuracy {trace_accuracy} != best_val_acc {summary['best_val_acc']}",
        ),
        (
            summary["best_epoch"] == selected_epoch(rows, summary.get("selection_metric")),
            "best_epoch is not the epoch metrics.csv's selection metric picks",
        ),
        (
            not differs(rows[summary["best_epoch"] - 1]["val_acc"], best["accuracy"]),
            "the best epoch's metrics row disagrees with best_model",
        ),
        (
            not differs(summary["final_model"]["accuracy"], rows[-1]["val_acc"]),
            "final_model disagrees with the last metrics row",
        ),
        (len(per_image) == n, f"val_predictions.csv has {len(per_image)} rows, expected {n}"),
        (
            not differs(sum(int(r["correct"]) for r in per_image) / max(n, 1), best["accuracy"]),
            "val_predictions.csv disagrees with best_model",
        ),
        (
            load_checkpoint(run_dir / LAST_CHECKPOINT)["epoch"] == epochs,
            "last.pt is not from the last epoch",
        ),
    ]


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def split_expectations(run_dir: Path, summary: dict) -> list[tuple[bool, str]]:
    """split.csv against the summary's sizes, and (holdout, kfold) the test block against
    test_predictions.csv: every role's count, no image in two roles."""
    roles = Counter(row["role"] for row in read_csv_rows(run_dir / SPLIT_FILE))
    paths = [row["path"] for row in read_csv_rows(run_dir / SPLIT_FILE)]
    test = summary.get("test")
    expected = {"train": summary["n_train"], "select": summary["n_val"]}
    expected["test"] = test["n"] if test else 0
    found = {role: roles.get(role, 0) for role in expected}
    checks = [
        (found == expected, f"split.csv has {found} images by role, the summary {expected}"),
        (len(set(paths)) == len(paths), "split.csv lists an image in two roles"),
    ]
    if test:
        per_image = read_csv_rows(run_dir / TEST_PREDICTIONS_FILE)
        correct = sum(int(row["correct"]) for row in per_image)
        checks += [
            (len(per_image) == test["n"], "test_predictions.csv disagrees with the test block"),
            (abs(correct / max(test["n"], 1) - test["accuracy"]) <= 1e-9, "test accuracy differs"),
            (summary["evaluation"]["n_test"] == test["n"], "evaluation.n_test != test.n"),
        ]
    return checks

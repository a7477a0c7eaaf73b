"""metrics.csv, one row per epoch (MetricsLog, read_metrics), the epoch its selection metric
picks, and the classification metrics summary.json and evaluate report for a set of
predictions."""

from __future__ import annotations

import csv
import os
from pathlib import Path

METRIC_COLUMNS = [
    "epoch",
    "train_loss",
    "train_penalty",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "seconds",
]


class MetricsLog:
    """metrics.csv: one row per epoch, flushed to disk as soon as the epoch ends.
    With path=None only in memory (ranks other than 0 under torchrun)."""

    def __init__(self, path: Path | None) -> None:
        self.rows: list[dict] = []
        self._file = None
        if path is None:
            return
        self.path = Path(path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            self.rows = read_metrics(self.path)  # a resumed run's rows
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=METRIC_COLUMNS)
        if new:
            self._writer.writeheader()

    def append(self, row: dict) -> None:
        if self._file is not None:
            self._writer.writerow({key: row[key] for key in METRIC_COLUMNS})
            self._file.flush()
            os.fsync(self._file.fileno())
        self.rows.append(row)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


def selected_epoch(rows: list[dict], metric: str | None) -> int:
    """The first epoch with the best value of the selection metric (val_acc if unrecorded)."""
    if metric == "val_loss":
        return min(rows, key=lambda row: row["val_loss"])["epoch"]
    return max(rows, key=lambda row: row["val_acc"])["epoch"]


def classification_metrics(targets: list[int], preds: list[int], classes: list[str]) -> dict:
    """Accuracy, macro and weighted precision/recall/F1, per-class report, confusion matrix."""
    from sklearn.metrics import (  # ~0.7 s to import: at the end of a run, not at its start
        accuracy_score,
        classification_report,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    labels = list(range(len(classes)))
    result = {"n": len(targets), "accuracy": float(accuracy_score(targets, preds))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            targets, preds, labels=labels, average=average, zero_division=0
        )
        result[average] = {"precision": float(precision), "recall": float(recall), "f1": float(f1)}
    result["per_class"] = classification_report(
        targets, preds, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    result["confusion_matrix"] = confusion_matrix(targets, preds, labels=labels).tolist()
    return result

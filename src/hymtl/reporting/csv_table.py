"""report.csv: one line per row of the report, reference rows first, then holdout/kfold rows.

The first columns are the reference table's (`regularizer` ... `sweep_dir`); then `protocol`
(reference, holdout or kfold), `test_set` (holdout/kfold: which test images), `n_runs`,
`selection_accuracy_mean` (the best val accuracy that chose the epoch), `ece_mean`,
`brier_mean`, `nll_mean` (summary.json `calibration`, empty for runs without it) and l2sp's
`alpha`, `beta`. On a holdout/kfold line the `accuracy_*`, `precision_*`, `recall_*`, `f1_*`,
`diff_*` and `p_value` columns are TEST metrics, `n_val` is the test images per run and
`n_seeds` the distinct training seeds among its `n_runs` runs; on a reference line they are the
best epoch's val metrics.
"""

from __future__ import annotations

import csv
from pathlib import Path

from hymtl.reporting.rows import CALIBRATION_KEYS

CSV_COLUMNS = (
    "regularizer,n_seeds,n_val,precision_mean,precision_std,recall_mean,recall_std,f1_mean,"
    "f1_std,accuracy_mean,accuracy_std,accuracy_ci_low,accuracy_ci_high,diff_vs_none,"
    "diff_ci_low,diff_ci_high,p_value,test,model,lambda_l1,lambda_l2,epochs,sweep_dir,"
    "protocol,test_set,n_runs,selection_accuracy_mean,ece_mean,brier_mean,nll_mean,alpha,beta"
).split(",")


def record(row: dict, comparison: dict, n_val: str, selection: float) -> dict:
    """The columns every line has, from a row and its comparison against `none` ({} without)."""
    line = {"regularizer": row["regularizer"], "n_seeds": row["n_seeds"], "n_val": n_val}
    for metric in ("precision", "recall", "f1", "accuracy"):
        line[f"{metric}_mean"], line[f"{metric}_std"] = row[metric] or (None, None)
    line["accuracy_ci_low"], line["accuracy_ci_high"] = row["accuracy_ci"] or (None, None)
    line["diff_vs_none"] = comparison.get("diff")
    line["diff_ci_low"], line["diff_ci_high"] = comparison.get("ci") or (None, None)
    line["p_value"], line["test"] = comparison.get("p"), comparison.get("test")
    setting = row["setting"]
    line |= setting.strengths._asdict()
    line |= {"model": setting.model, "epochs": setting.epochs, "sweep_dir": row["sweep"]}
    line["selection_accuracy_mean"] = selection
    line |= {f"{key}_mean": row["calibration"][key] for key in CALIBRATION_KEYS}
    return line


def csv_rows(rows: list[dict], comparisons: list[dict], tested: list[dict] = ()) -> list[dict]:
    """report.csv's lines: the reference rows, then the holdout/kfold rows (module docstring)."""
    by_label = {c["label"]: c for c in comparisons}
    table = []
    for row in rows:  # the epoch was chosen on val/ and measured there
        line = record(row, by_label.get(row["label"], {}), row["n_val"], row["accuracy"][0])
        table.append(line | {"protocol": "reference", "n_runs": row["n_seeds"]})
    for row in tested:
        line = record(row, row.get("comparison") or {}, row["n_test_text"], row["selection"][0])
        line |= {"protocol": row["protocol"], "test_set": row["test_set"].text()}
        table.append(line | {"n_runs": row["n_runs"]})
    return [{key: "" if value is None else value for key, value in r.items()} for r in table]


def write_csv(path: Path, lines: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(lines)

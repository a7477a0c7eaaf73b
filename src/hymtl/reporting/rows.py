"""What every table row of the report shares, reference and holdout/kfold alike.

A row is a dict: `regularizer`, `setting` (settings.Setting), `sweep` (the sweep label of a row
shown per sweep dir, else None), `runs`, `label`, and the statistics of its table. Rows of one
setting never pool a repeated sample (split_repeated); each row is named by what tells it apart
(label_rows) and tested against one `none` row (choose_reference)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from hymtl.reporting.settings import strength_text

CALIBRATION_KEYS = ("ece", "brier", "nll")
NEAR_ZERO_KEY = (
    "fraction_abs_below_0.001"  # written by hymtl.training.regularizers.weight_statistics
)


def by_sweep_dir(group: list) -> list[tuple[str, Path, list]]:
    """The runs of group per sweep dir (the SWEEP_DIR argument each was found under), as
    (label, sweep dir, runs); the label is the dir's name, or its whole path where two sweep
    dirs share a name."""
    by_sweep: dict[Path, list] = {}
    for run in group:
        by_sweep.setdefault(run.sweep_dir or run.path.parent, []).append(run)
    names = Counter(sweep.name for sweep in by_sweep)
    return [
        (sweep.name if names[sweep.name] == 1 else str(sweep), sweep, members)
        for sweep, members in by_sweep.items()
    ]


def split_repeated(group: list, key: Callable) -> list[tuple[str | None, list]]:
    """The runs of one row as (sweep label, runs) parts whose key(run) values are distinct: one
    part when no key repeats; else one per sweep dir (a repeated key is a rerun, not a new
    sample), and within a sweep dir that repeats a key itself, one per run."""
    if len({key(run) for run in group}) == len(group):
        return [(None, group)]
    parts = []
    for label, sweep, members in by_sweep_dir(group):
        if len({key(run) for run in members}) == len(members):
            parts.append((label, members))
        else:
            parts += [(f"{label}/{run.path.relative_to(sweep)}", [run]) for run in members]
    return sorted(parts, key=lambda part: part[0])


def label_rows(
    rows: list[dict], strengths: dict[str, set], extra: Callable[[dict], list[str]] | None = None
) -> None:
    """Name each row (row["label"]) by its regularizer plus whatever else tells it apart from
    the others: strengths (when its regularizer ran at several: `strengths` maps a regularizer
    to the strengths it ran with), model, epochs, then extra(row)'s parts, and the sweep dir."""
    models = {row["setting"].model for row in rows}
    epochs = {row["setting"].epochs for row in rows}
    for row in rows:
        setting = row["setting"]
        parts = [setting.regularizer]
        if len(strengths[setting.regularizer]) > 1:
            parts.append(strength_text(setting.strengths))
        if len(models) > 1:
            parts.append(str(setting.model))
        if len(epochs) > 1:
            parts.append(f"{setting.epochs} epoch{'' if setting.epochs == 1 else 's'}")
        parts += extra(row) if extra is not None else []
        row["label"] = ", ".join(parts) + (f" ({row['sweep']})" if row["sweep"] else "")


def choose_reference(row: dict, candidates: list[dict]) -> dict | None:
    """The one `none` row among candidates (rows already known to fit row's model, epochs, ...)
    to test row against: the only one, else the one of row's sweep label, else the one read
    from the same sweep dirs. None when no single row fits."""

    def source_dirs(some_row: dict) -> set[Path]:
        return {run.sweep_dir or run.path.parent for run in some_row["runs"]}

    for fits in (
        lambda ref: True,  # the only one
        lambda ref: ref["sweep"] == row["sweep"],
        lambda ref: source_dirs(ref) == source_dirs(row),
    ):
        chosen = [ref for ref in candidates if fits(ref)]
        if len(chosen) == 1:
            return chosen[0]
    return None


def calibration_means(runs: list) -> dict:
    """Mean ECE, Brier and NLL over the runs whose summary.json has `calibration` (the selected
    weights on the evaluation set: test under holdout/kfold, val under reference); None for a
    metric no run has. n_runs: how many runs had it; bins: the ECE bin counts seen."""
    blocks = [b for b in (run.summary.get("calibration") for run in runs) if isinstance(b, dict)]
    means = {}
    for key in CALIBRATION_KEYS:
        values = [b[key] for b in blocks if isinstance(b.get(key), (int, float))]
        means[key] = statistics.fmean(values) if values else None
    bins = sorted({b["bins"] for b in blocks if isinstance(b.get("bins"), int)})
    return {**means, "n_runs": len(blocks), "bins": bins}


def weight_statistics(rows: Iterable[dict]) -> list[dict]:
    """Per row, the mean over its runs of each run's final_weights (older runs lack them and are
    left out; so is a row with none)."""
    table = []
    for row in rows:
        weights = [w for w in (run.summary.get("final_weights") for run in row["runs"]) if w]
        if weights:
            near_zero = [w[NEAR_ZERO_KEY] for w in weights if NEAR_ZERO_KEY in w]
            table.append(
                {
                    "regularizer": row["label"],
                    "n_runs": len(weights),
                    "sum_abs": statistics.fmean(w["sum_abs"] for w in weights),
                    "sum_sq": statistics.fmean(w["sum_sq"] for w in weights),
                    "near_zero": statistics.fmean(near_zero) if near_zero else None,
                }
            )
    return table

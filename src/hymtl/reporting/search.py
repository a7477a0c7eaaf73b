"""The λ-search section of report.md: every trial, the best one, accuracy against λ (search.png).

Trials are the runs settings.trial_runs picks: a regularizer tried at several strengths with one
sample each. They are ranked by the selection metric (best_model accuracy = best_val_acc): val/
under the reference protocol (chosen and measured on the same images: optimistic), the select
split under holdout or kfold, whose `test` block then gives the chosen trial's score on unseen
images. (The sampler that proposes λ during a search is hymtl.run.search_sampler.)"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import yaml
from matplotlib.figure import Figure

from hymtl.reporting.settings import (
    held_out_accuracy,
    run_protocol,
    selection_accuracy,
    strength_text,
    strengths,
    trial_runs,
)
from hymtl.reporting.tables import markdown_table

STRENGTH_AXES = {
    "lambda_l1": "λ1 (Σ|w| weight)",
    "lambda_l2": "λ2 (Σw² weight or weight decay)",
    "alpha": "α (l2sp, toward w0)",
    "beta": "β (l2sp, head Σw²)",
}


def search_trials(runs) -> list[dict]:
    """The λ-search trials among runs (see trial_runs), best first by the selection metric
    (best_model accuracy: val/ under the reference protocol, the select split under holdout or
    kfold); [] when λ was fixed. A trial's test accuracy is shown, never used to rank."""
    trials = []
    for run in trial_runs(runs):
        values = strengths(run)
        trial = {"run": run, "regularizer": run.regularizer, "protocol": run_protocol(run)}
        trial |= {"accuracy": selection_accuracy(run), "test_accuracy": held_out_accuracy(run)}
        trials.append(trial | {"strengths": values} | values._asdict())
    return sorted(trials, key=lambda t: -t["accuracy"])


def plot_search(trials: list[dict], path: Path) -> None:
    keys = ["lambda_l1", "lambda_l2"] + [
        key for key in ("alpha", "beta") if any(t[key] > 0 for t in trials)
    ]
    fig = Figure(figsize=(5.5 * len(keys), 4))
    axes = fig.subplots(1, len(keys), sharey=True)
    names = sorted({t["regularizer"] for t in trials})
    for name, color in zip(names, mpl.rcParams["axes.prop_cycle"].by_key()["color"]):
        chosen = [t for t in trials if t["regularizer"] == name]
        for ax, key in zip(axes, keys):
            points = [(t[key], t["accuracy"]) for t in chosen if t[key] > 0]
            if points:
                ax.scatter(*zip(*points), color=color, label=name, alpha=0.8)
    for ax, key in zip(axes, keys):
        label = STRENGTH_AXES[key]
        ax.set_xscale("log")
        ax.set(xlabel=label, title=f"selection accuracy vs {label.split()[0]}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best val (selection) accuracy")
    labelled = [ax for ax in axes if ax.get_legend_handles_labels()[0]]
    if labelled:
        labelled[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def best_trial_text(best: dict) -> str:
    """How the best trial was chosen, and (holdout/kfold) its score on images never used."""
    where = f"{best['regularizer']}**, {strength_text(best['strengths'])}"
    if best["protocol"] == "reference":
        return (
            f"Best trial: **{where}, best val accuracy {100 * best['accuracy']:.2f}% "
            f"(`{best['run'].path.name}`). It is chosen on the same val images it is measured "
            "on, so this score is optimistic (selection-biased)."
        )
    test = best["test_accuracy"]
    test_text = (
        f"its test accuracy: {100 * test:.2f}% (test images never used to choose)"
        if test is not None
        else "it has no test score (summary.json has no `test`)"
    )
    return (
        f"Best trial: **{where}, selected on the selection split ({best['protocol']}): "
        f"{100 * best['accuracy']:.2f}%; {test_text} (`{best['run'].path.name}`)."
    )


def protocol_cell(trial: dict) -> str:
    """The trial's protocol; under kfold with its fold, since a trial is then one fold."""
    evaluation = trial["run"].summary.get("evaluation") or {}
    if trial["protocol"] == "kfold" and evaluation.get("fold") is not None:
        return f"kfold (fold {evaluation['fold']} of {evaluation.get('folds')})"
    return trial["protocol"]


def search_lines(runs, sweep_dirs: list[Path], out_dir: Path) -> list[str]:
    """Markdown for report.md (and search.png in out_dir); [] when the sweep was no search."""
    trials = search_trials(runs)
    if not trials:
        return []
    plot_search(trials, out_dir / "search.png")
    lines = ["", f"## λ search ({len(trials)} completed trials)", ""]
    for sweep_dir in sweep_dirs:
        results = Path(sweep_dir) / "optimization_results.yaml"
        if results.is_file():
            best = yaml.safe_load(results.read_text())
            lines.append(
                f"Optuna's result (`{results}`): best value {best.get('best_value')}, "
                f"best params {best.get('best_params')}."
            )
    lines += [
        best_trial_text(trials[0]) + " One run per trial: these are trials, not seeds, so no "
        "mean or interval is given; compare with the seed spread of a fixed setting before "
        "calling a difference real.",
        "",
        "Trials are ranked by the selection accuracy (best val accuracy: val/ under the reference "
        "protocol, the select split under holdout or kfold); `test acc %` is the selected "
        "weights on the held-out test images, shown, never used to rank (– without a test set).",
        "",
    ]
    return lines + trial_table(trials) + ["", "![search](search.png)"]


def trial_table(trials: list[dict]) -> list[str]:
    """Every trial, best first; α and β columns only when a trial used them."""
    with_ab = any(t["alpha"] or t["beta"] for t in trials)
    header = ["rank", "regularizer", "λ1", "λ2"] + (["α", "β"] if with_ab else [])
    header += ["seed", "protocol", "selection acc %", "test acc %", "run"]
    table = []
    for rank, trial in enumerate(trials, 1):
        test = trial["test_accuracy"]
        cells = [rank, trial["regularizer"], f"{trial['lambda_l1']:.3g}"]
        cells.append(f"{trial['lambda_l2']:.3g}")
        cells += [f"{trial['alpha']:.3g}", f"{trial['beta']:.3g}"] if with_ab else []
        cells += [trial["run"].seed, protocol_cell(trial), f"{100 * trial['accuracy']:.2f}"]
        cells += ["–" if test is None else f"{100 * test:.2f}", f"`{trial['run'].path.name}`"]
        table.append(cells)
    return markdown_table(header, table)

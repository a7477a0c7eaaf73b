"""The λ-search part of hymtl.report: every trial, the best λ, accuracy against λ."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402


def effective_lambdas(run) -> tuple[float, float]:
    """(λ1, λ2) as the regularizer applied them: l1 in the loss; l2 in the loss or as decay."""
    regularizer = run.config.get("regularizer") or {}
    l2 = float(regularizer.get("l2") or 0.0) or float(regularizer.get("weight_decay") or 0.0)
    return float(regularizer.get("l1") or 0.0), l2


def search_trials(runs) -> list[dict]:
    """Completed runs of a sweep whose λ varied, best first; [] when λ was fixed."""
    completed = [run for run in runs if run.status == "completed"]
    trials = []
    for run in completed:
        lambda_l1, lambda_l2 = effective_lambdas(run)
        accuracy = run.summary["best_model"]["accuracy"]
        trials.append({"run": run, "regularizer": run.regularizer, "accuracy": accuracy,
                       "lambda_l1": lambda_l1, "lambda_l2": lambda_l2})  # fmt: skip
    by_regularizer: dict[str, set] = {}
    for trial in trials:
        by_regularizer.setdefault(trial["regularizer"], set()).add(
            (trial["lambda_l1"], trial["lambda_l2"])
        )
    if not any(len(pairs) > 1 for pairs in by_regularizer.values()):
        return []
    return sorted(trials, key=lambda t: -t["accuracy"])


def plot_search(trials: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    names = sorted({t["regularizer"] for t in trials})
    for name, color in zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        chosen = [t for t in trials if t["regularizer"] == name]
        for ax, key in zip(axes, ("lambda_l1", "lambda_l2")):
            points = [(t[key], t["accuracy"]) for t in chosen if t[key] > 0]
            if points:
                ax.scatter(*zip(*points), color=color, label=name, alpha=0.8)
    for ax, label in zip(axes, ("λ1 (Σ|w| weight)", "λ2 (Σw² weight or weight decay)")):
        ax.set_xscale("log")
        ax.set(xlabel=label, title=f"best val accuracy vs {label.split()[0]}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best val accuracy")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    best = trials[0]
    lines += [
        f"Best trial: **{best['regularizer']}**, λ1={best['lambda_l1']:.3g}, "
        f"λ2={best['lambda_l2']:.3g}, best val accuracy {100 * best['accuracy']:.2f}% "
        f"(`{best['run'].path.name}`). One run per trial: compare with the seed spread of a "
        "fixed setting before calling a difference real.",
        "",
        "| rank | regularizer | λ1 | λ2 | seed | best val acc % | run |",
        "|---|---|---|---|---|---|---|",
    ]
    for rank, trial in enumerate(trials, 1):
        lines.append(
            f"| {rank} | {trial['regularizer']} | {trial['lambda_l1']:.3g} | "
            f"{trial['lambda_l2']:.3g} | {trial['run'].seed} | {100 * trial['accuracy']:.2f} | "
            f"`{trial['run'].path.name}` |"
        )
    lines += ["", "![search](search.png)"]
    return lines

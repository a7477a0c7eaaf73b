"""The λ-search part of hymtl.report (every trial, the best λ, accuracy against λ), and the
sampler that lets a resumed search propose new λ."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import yaml
from matplotlib.figure import Figure

from hymtl.regularizers import typed_lambdas


def effective_lambdas(run) -> tuple[float, float]:
    """The run's (lambda_l1, lambda_l2), read back from its regularizer (regularizers.py)."""
    return typed_lambdas(run.config.get("regularizer") or {})


def setting(run) -> tuple:
    """What a run trained, apart from its seed: (model name, regularizer, (λ1, λ2), epochs).
    Runs of one setting with different seeds are repeats; anything else is a different setting."""
    model = run.config.get("model")
    model_name = model.get("name") if isinstance(model, dict) else None
    return model_name, run.regularizer, effective_lambdas(run), run.config.get("epochs")


def trial_runs(runs) -> list:
    """The completed runs that are λ-search trials, not seeds: runs of a regularizer tried at
    more than one λ, in a setting run with a single seed (a λ tried again with the same seed is
    still one trial per run, never a second seed). A λ rerun with ≥2 seeds is a seed group."""
    completed = [run for run in runs if run.status == "completed"]
    lambdas: dict[str, set] = {}
    seeds: dict[tuple, set] = {}
    for run in completed:
        lambdas.setdefault(run.regularizer, set()).add(effective_lambdas(run))
        seeds.setdefault(setting(run), set()).add(run.seed)
    searched = {name for name, pairs in lambdas.items() if len(pairs) > 1}
    return [
        run for run in completed if run.regularizer in searched and len(seeds[setting(run)]) < 2
    ]


def search_trials(runs) -> list[dict]:
    """The λ-search trials among runs (see trial_runs), best first; [] when λ was fixed."""
    trials = []
    for run in trial_runs(runs):
        lambda_l1, lambda_l2 = effective_lambdas(run)
        trials.append(
            {
                "run": run,
                "regularizer": run.regularizer,
                "accuracy": run.summary["best_model"]["accuracy"],
                "lambda_l1": lambda_l1,
                "lambda_l2": lambda_l2,
            }
        )
    return sorted(trials, key=lambda t: -t["accuracy"])


def plot_search(trials: list[dict], path: Path) -> None:
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, sharey=True)
    names = sorted({t["regularizer"] for t in trials})
    for name, color in zip(names, mpl.rcParams["axes.prop_cycle"].by_key()["color"]):
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
        f"(`{best['run'].path.name}`). One run per trial: these are trials, not seeds, so no "
        "mean or interval is given; compare with the seed spread of a fixed setting before "
        "calling a difference real.",
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


def resumed_seed(seed: int | None, trials_before: int) -> int | None:
    """The sampler seed for an invocation that finds trials_before trials in its study: `seed`
    itself for a new study (the same λ as a plain TPESampler(seed)), otherwise a seed derived
    from both, so each resumption draws fresh λ instead of replaying the first invocation's."""
    if seed is None or trials_before == 0:
        return seed
    return int(np.random.SeedSequence([seed, trials_before]).generate_state(1)[0])


class ResumableTPESampler:
    """Optuna's TPESampler, seeded by resumed_seed(seed, number of trials already in the study).

    hparams_search=lambda_search names this class as the sampler's `_target_`. The study is
    only known once the sweeper asks for the first trial, so the TPESampler is built then; the
    first trial's number is how many trials (finished, failed or left running by a killed
    invocation: each drew λ) the study held before. Everything else is TPESampler's."""

    def __init__(self, seed: int | None = None, **tpe_options) -> None:
        self.seed = seed
        self.tpe_options = tpe_options
        self.sampler = None

    def tpe(self, trial):
        if self.sampler is None:
            from optuna.samplers import TPESampler  # optional extra: only a search needs it

            seed = resumed_seed(self.seed, trial.number)
            self.sampler = TPESampler(seed=seed, **self.tpe_options)
        return self.sampler

    def infer_relative_search_space(self, study, trial):
        return self.tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.tpe(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        if self.sampler is None:
            self.seed = None  # asked to drop the seed before the first trial
        else:
            self.sampler.reseed_rng()

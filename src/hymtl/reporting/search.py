"""The λ-search part of hymtl.report (every trial, the best λ, accuracy against λ), what tells
runs apart (setting, strengths, protocol, sample_key: shared with report.py and
protocol_report.py), and the sampler that lets a resumed search propose new λ.

Trials are ranked by the selection metric (best_model accuracy = best_val_acc): val/ under the
reference protocol (chosen and measured on the same images: optimistic), the select split under
holdout or kfold, whose `test` block then gives the chosen trial's score on unseen images."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import yaml
from matplotlib.figure import Figure

from hymtl.training.regularizers import typed_lambdas

PROTOCOLS = ("reference", "holdout", "kfold")  # config.evaluation.protocol (hymtl/config/schema.py)
KNOWN_ORDER = ("none", "l1", "l2", "elasticnet", "l2sp")  # how reports order regularizers


def effective_lambdas(run) -> tuple[float, float]:
    """The run's (lambda_l1, lambda_l2), read back from its regularizer (regularizers.py)."""
    return typed_lambdas(run.config.get("regularizer") or {})


def strengths(run) -> tuple[float, float, float, float]:
    """Every strength the run's regularizer trained with: (λ1, λ2, α, β); α and β are l2sp's
    (0 for the other regularizers and for runs older than l2sp)."""
    regularizer = run.config.get("regularizer") or {}
    alpha, beta = (float(regularizer.get(key) or 0.0) for key in ("alpha", "beta"))
    return (*effective_lambdas(run), alpha, beta)


def strength_text(values: tuple) -> str:
    """ "λ1=0.001 λ2=0" for a λ-regularizer, "α=0.1 β=0.01" for l2sp (λ too when also set)."""
    lambda_l1, lambda_l2, alpha, beta = values
    parts = []
    if lambda_l1 or lambda_l2 or not (alpha or beta):
        parts.append(f"λ1={lambda_l1:.3g} λ2={lambda_l2:.3g}")
    if alpha or beta:
        parts.append(f"α={alpha:.3g} β={beta:.3g}")
    return " ".join(parts)


def run_protocol(run) -> str:
    """config.evaluation.protocol: reference (epoch chosen and measured on val/), holdout or
    kfold (a test set the choice never saw). Runs older than the evaluation group: reference."""
    evaluation = run.config.get("evaluation")
    protocol = evaluation.get("protocol") if isinstance(evaluation, dict) else None
    if protocol is None and isinstance(run.summary.get("evaluation"), dict):
        protocol = run.summary["evaluation"].get("protocol")
    return str(protocol or "reference")


def sample_key(run) -> tuple:
    """What makes two runs of one setting two samples rather than a rerun: the seed, and under
    holdout/kfold also the split seed (and fold) that drew the select and test images."""
    evaluation = run.summary.get("evaluation") or run.config.get("evaluation") or {}
    protocol = run_protocol(run)
    if protocol == "kfold":
        return evaluation.get("split_seed"), evaluation.get("fold"), run.seed
    if protocol == "holdout":
        return evaluation.get("split_seed"), run.seed
    return (run.seed,)


def setting(run) -> tuple:
    """What a run trained, apart from its seed: (model name, regularizer, strengths, epochs),
    strengths = (λ1, λ2, α, β) (see `strengths`). Runs of one setting with different seeds are
    repeats; anything else is a different setting."""
    model = run.config.get("model")
    model_name = model.get("name") if isinstance(model, dict) else None
    return model_name, run.regularizer, strengths(run), run.config.get("epochs")


def trial_runs(runs) -> list:
    """The completed runs that are λ-search trials, not seeds: runs of a regularizer tried at
    more than one strength (λ, or α/β for l2sp) under one evaluation protocol, in a setting run
    with a single sample (sample_key: one seed; under kfold one (split seed, fold, seed)). A
    strength tried again with the same seed is still one trial per run, never a second seed; a
    strength rerun with ≥2 seeds (or folds) is a seed group."""
    completed = [run for run in runs if run.status == "completed"]
    tried: dict[tuple, set] = {}
    samples: dict[tuple, set] = {}
    for run in completed:
        tried.setdefault((run_protocol(run), run.regularizer), set()).add(strengths(run))
        samples.setdefault((run_protocol(run), setting(run)), set()).add(sample_key(run))
    searched = {key for key, values in tried.items() if len(values) > 1}
    return [
        run
        for run in completed
        if (run_protocol(run), run.regularizer) in searched
        and len(samples[run_protocol(run), setting(run)]) < 2
    ]


def held_out_accuracy(run) -> float | None:
    """The selected weights' accuracy on the test images (holdout/kfold), None without one."""
    test = run.summary.get("test")
    return test.get("accuracy") if isinstance(test, dict) else None


def search_trials(runs) -> list[dict]:
    """The λ-search trials among runs (see trial_runs), best first by the selection metric
    (best_model accuracy: val/ under the reference protocol, the select split under holdout or
    kfold); [] when λ was fixed. A trial's test accuracy is shown, never used to rank."""
    trials = []
    for run in trial_runs(runs):
        lambda_l1, lambda_l2, alpha, beta = strengths(run)
        trials.append(
            {
                "run": run,
                "regularizer": run.regularizer,
                "protocol": run_protocol(run),
                "accuracy": run.summary["best_model"]["accuracy"],
                "test_accuracy": held_out_accuracy(run),
                "lambda_l1": lambda_l1,
                "lambda_l2": lambda_l2,
                "alpha": alpha,
                "beta": beta,
            }
        )
    return sorted(trials, key=lambda t: -t["accuracy"])


STRENGTH_AXES = {
    "lambda_l1": "λ1 (Σ|w| weight)",
    "lambda_l2": "λ2 (Σw² weight or weight decay)",
    "alpha": "α (l2sp, toward w0)",
    "beta": "β (l2sp, head Σw²)",
}


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
    where = f"{best['regularizer']}**, {trial_strengths(best)}"
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


def trial_strengths(trial: dict) -> str:
    return strength_text((trial["lambda_l1"], trial["lambda_l2"], trial["alpha"], trial["beta"]))


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
    with_ab = any(t["alpha"] or t["beta"] for t in trials)
    header = ["rank", "regularizer", "λ1", "λ2"] + (["α", "β"] if with_ab else [])
    header += ["seed", "protocol", "selection acc %", "test acc %", "run"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, trial in enumerate(trials, 1):
        test = trial["test_accuracy"]
        cells = [rank, trial["regularizer"], f"{trial['lambda_l1']:.3g}"]
        cells.append(f"{trial['lambda_l2']:.3g}")
        cells += [f"{trial['alpha']:.3g}", f"{trial['beta']:.3g}"] if with_ab else []
        cells += [trial["run"].seed, protocol_cell(trial), f"{100 * trial['accuracy']:.2f}"]
        cells += ["–" if test is None else f"{100 * test:.2f}", f"`{trial['run'].path.name}`"]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
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

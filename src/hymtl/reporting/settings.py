"""What tells runs apart: the setting a run trained (model, regularizer, strengths, epochs), its
evaluation protocol, and what makes two runs of one setting two samples rather than a rerun
(sample_key). Also which completed runs are λ-search trials rather than seeds.

Every table of the report groups runs by these, so they live once, here."""

from __future__ import annotations

from typing import NamedTuple

from hymtl.training.regularizers import typed_lambdas

PROTOCOLS = ("reference", "holdout", "kfold")  # config.evaluation.protocol (hymtl/config/schema.py)
TESTED = ("holdout", "kfold")  # protocols with a held-out test set
KNOWN_ORDER = ("none", "l1", "l2", "elasticnet", "l2sp")  # how reports order regularizers


class Strengths(NamedTuple):
    """Every strength a regularizer trained with; alpha and beta are l2sp's (0 for the other
    regularizers and for runs older than l2sp)."""

    lambda_l1: float
    lambda_l2: float
    alpha: float
    beta: float


class Setting(NamedTuple):
    """What a run trained, apart from its seed. Runs of one setting with different seeds are
    repeats; anything else is a different setting."""

    model: str | None
    regularizer: str
    strengths: Strengths
    epochs: int | None


def effective_lambdas(run) -> tuple[float, float]:
    """The run's (lambda_l1, lambda_l2), read back from its regularizer (regularizers.py)."""
    return typed_lambdas(run.config.get("regularizer") or {})


def strengths(run) -> Strengths:
    """Every strength the run's regularizer trained with: (λ1, λ2, α, β)."""
    regularizer = run.config.get("regularizer") or {}
    alpha, beta = (float(regularizer.get(key) or 0.0) for key in ("alpha", "beta"))
    return Strengths(*effective_lambdas(run), alpha, beta)


def strength_text(values: Strengths) -> str:
    """ "λ1=0.001 λ2=0" for a λ-regularizer, "α=0.1 β=0.01" for l2sp (λ too when also set)."""
    values = Strengths(*values)
    parts = []
    if values.lambda_l1 or values.lambda_l2 or not (values.alpha or values.beta):
        parts.append(f"λ1={values.lambda_l1:.3g} λ2={values.lambda_l2:.3g}")
    if values.alpha or values.beta:
        parts.append(f"α={values.alpha:.3g} β={values.beta:.3g}")
    return " ".join(parts)


def setting(run) -> Setting:
    """(model name, regularizer, strengths, epochs) of the run."""
    model = run.config.get("model")
    model_name = model.get("name") if isinstance(model, dict) else None
    return Setting(model_name, run.regularizer, strengths(run), run.config.get("epochs"))


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


def trial_runs(runs) -> list:
    """The completed runs that are λ-search trials, not seeds: runs of a regularizer tried at
    more than one strength (λ, or α/β for l2sp) under one evaluation protocol, in a setting run
    with a single sample (sample_key: one seed; under kfold one (split seed, fold, seed)). A
    strength tried again with the same seed is still one trial per run, never a second seed; a
    strength rerun with ≥2 seeds (or folds) is a seed group."""
    completed = [run for run in runs if run.status == "completed"]
    # Where Hydra recorded how a run was launched, a grid sweep over λ (not hparams_search=)
    # is a set of settings, never a search: only recorded searches can hold trials.
    completed = [run for run in completed if getattr(run, "search", "unknown") is not None]
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


def selection_accuracy(run) -> float:
    """The best val accuracy, the number that chose the run's epoch (summary.json best_model):
    val/ under the reference protocol, the select split under holdout or kfold."""
    return run.summary["best_model"]["accuracy"]


def held_out_accuracy(run) -> float | None:
    """The selected weights' accuracy on the test images (holdout/kfold), None without one."""
    test = run.summary.get("test")
    return test.get("accuracy") if isinstance(test, dict) else None


def regularizer_order(names) -> list[str]:
    """none, l1, l2, elasticnet, l2sp first (KNOWN_ORDER), then any others by name."""
    rank = {name: index for index, name in enumerate(KNOWN_ORDER)}
    return sorted(set(names), key=lambda name: (rank.get(name, len(rank)), name))

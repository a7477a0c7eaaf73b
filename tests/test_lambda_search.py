"""A resumed λ search proposes new λ: hparams_search=lambda_search's sampler, and a real rerun."""

import json
import os
import subprocess
import sys

import pytest

from hymtl.run.search_sampler import ResumableTPESampler, resumed_seed

from .conftest import TINY

optuna = pytest.importorskip("optuna")


def objective(trial):
    # The search space of conf/hparams_search/lambda_search.yaml.
    return trial.suggest_float("lambda_l1", 1e-6, 1e-1, log=True) + trial.suggest_float(
        "lambda_l2", 1e-6, 1e-1, log=True
    )


def run_invocation(storage, sampler, n_trials=2):
    """One `python -m hymtl.train -m hparams_search=lambda_search` invocation, as the sweeper
    drives it: the study loaded if it exists, n_trials more asked and told."""
    study = optuna.create_study(
        study_name="lambda_search_elasticnet",
        storage=storage,
        sampler=sampler,
        direction="maximize",
        load_if_exists=True,
    )
    study.optimize(objective, n_trials=n_trials)
    return [(t.params["lambda_l1"], t.params["lambda_l2"]) for t in study.trials]


def test_a_resumed_study_draws_new_lambdas_and_a_new_one_matches_plain_tpe():
    storage = optuna.storages.InMemoryStorage()
    first = run_invocation(storage, ResumableTPESampler(seed=0))
    resumed = run_invocation(storage, ResumableTPESampler(seed=0))  # the same command again
    assert resumed[:2] == first and len(set(resumed)) == 4

    plain = run_invocation(optuna.storages.InMemoryStorage(), optuna.samplers.TPESampler(seed=0))
    assert first == plain  # a new study samples what TPESampler(seed=0) always sampled
    # ... which is the bug this sampler fixes: plain TPE replays its λ on resume.
    storage = optuna.storages.InMemoryStorage()
    run_invocation(storage, optuna.samplers.TPESampler(seed=0))
    replayed = run_invocation(storage, optuna.samplers.TPESampler(seed=0))
    assert replayed[2:] == replayed[:2]


def test_resumed_seed_is_the_seed_for_a_new_study_and_differs_per_resumption():
    assert resumed_seed(0, 0) == 0 and resumed_seed(None, 5) is None
    seeds = {resumed_seed(0, n) for n in (2, 4, 20)} | {resumed_seed(1, 2)}
    assert len(seeds) == 4 and 0 not in seeds
    assert resumed_seed(0, 2) == resumed_seed(0, 2)  # reproducible


@pytest.mark.slow
def test_rerunning_the_search_command_adds_trials_at_new_lambdas(image_root, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "search"
    command = [
        sys.executable,
        "-m",
        "hymtl.train",
        "-m",
        "hparams_search=lambda_search",
        "hydra.sweeper.n_trials=2",
        "data=imagefolder",
        f"data.root={image_root}",
        "epochs=1",
        f"hydra.sweep.dir={sweep}",
        *TINY,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(2):
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert len(summaries) == 4 and all(s["status"] == "completed" for s in summaries)
    lambdas = {(s["config"]["lambda_l1"], s["config"]["lambda_l2"]) for s in summaries}
    assert len(lambdas) == 4


def search_dir(overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module("hymtl.conf", version_base="1.3"):
        cfg = compose("config", ["hparams_search=lambda_search", *overrides], True)
        return cfg.hydra.sweep.dir


def test_the_search_study_is_keyed_by_data_model_epochs_and_protocol(tmp_path):
    from hymtl.data.toydata import write_class_images

    for name in ("a", "b"):
        write_class_images(tmp_path / name, per_class=3)
    a, b = (f"data.root={tmp_path / name}" for name in ("a", "b"))
    # The same command finds the same study (it resumes) ...
    assert search_dir([a]) == search_dir([a]) and "lambda_search/elasticnet-" in search_dir([a])
    # ... another folder, another model, other epochs or another protocol gets its own.
    keys = {search_dir([a]), search_dir([b]), search_dir([a, "model=resnet50"])}
    keys |= {search_dir([a, "epochs=3"]), search_dir([a, "evaluation=kfold"])}
    keys |= {search_dir([a, "evaluation=kfold", "evaluation.fold=1"])}
    assert len(keys) == 6
    # The same folder with one more image is other data: a new study, not more trials.
    before = search_dir([a])
    write_class_images(tmp_path / "a", per_class=4)
    assert search_dir([a]) != before


@pytest.mark.slow
def test_the_same_search_on_two_data_roots_makes_two_studies(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    from hymtl.data.toydata import make_toy_image_folder

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("first", "second"):
        root = make_toy_image_folder(tmp_path / name, train_per_class=4, val_per_class=2)
        command = [sys.executable, "-m", "hymtl.train", "-m", "hparams_search=lambda_search"]
        command += ["hydra.sweeper.n_trials=1", "data=imagefolder", f"data.root={root}"]
        command += ["epochs=1", "threads=1", *TINY]
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, result.stderr[-3000:]
    studies = sorted((tmp_path / "multirun" / "lambda_search").glob("elasticnet-*/optuna.db"))
    assert len(studies) == 2
    for study in studies:  # one trial each: neither search saw the other's
        trials = optuna.load_study(
            study_name="lambda_search_elasticnet", storage=f"sqlite:///{study}"
        )
        assert len(trials.trials) == 1

"""The sampler of hparams_search=lambda_search: Optuna's TPE, reseeded when a search resumes.

Hydra's Optuna sweeper builds it at training time from conf/hparams_search/lambda_search.yaml
(`hydra.sweeper.sampler._target_`). A plain TPESampler(seed) replays the first invocation's λ
when the same search command runs again on its stored study; this one draws fresh λ instead."""

from __future__ import annotations

import numpy as np


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

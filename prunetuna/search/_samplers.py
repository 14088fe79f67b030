"""Optuna samplers by name, each seeded from the config and the trial number."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from prunetuna.registry import Registry

__all__ = ["SAMPLERS", "TrialSeededSampler", "make_sampler", "population_size", "trial_seed"]


def population_size(n_trials: int) -> int:
    """NSGA-II's default population (50) exceeds a typical budget of 30 trials, leaving it a random
    search; about four generations fit the budget instead (at least 8 candidates each)."""
    return max(8, min(50, n_trials // 4))


SamplerFactory = Callable[[int, int], optuna.samplers.BaseSampler]
"""(seed, n_trials) -> a fresh sampler."""

SAMPLERS: Registry[SamplerFactory] = Registry("sampler")
SAMPLERS.register("tpe", lambda seed, n: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True))
SAMPLERS.register("nsga2", lambda seed, n: optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size(n)))
SAMPLERS.register("random", lambda seed, n: optuna.samplers.RandomSampler(seed=seed))
SAMPLERS.register("gp", lambda seed, n: optuna.samplers.GPSampler(seed=seed))
SAMPLERS.register("cmaes", lambda seed, n: optuna.samplers.CmaEsSampler(seed=seed))


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number``: (seed, number) mixed, so that studies with neighbouring
    seeds do not replay each other's streams shifted by one trial (as ``seed + number`` would)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """One of :data:`SAMPLERS`, created afresh for every trial with the seed :func:`trial_seed`.

    Workers that start together would otherwise draw the same random points from equally seeded
    samplers (TPE's first trials are random); trial numbers are unique in a study, so each trial gets
    its own stream, and one process's search stays reproducible given the seed. TPE, NSGA-II, CMA-ES
    and random keep what they learn in the study's storage, so a fresh instance per trial loses
    nothing; GP loses its cache of fitted kernel parameters (it refits from the trials). One trial at
    a time per process (prunetuna runs no ``n_jobs``); ``reseed_rng`` has nothing to do.
    """

    def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._factory = factory
        self._seed = seed
        self._current = factory(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._current = self._factory(trial_seed(self._seed, trial.number))
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._current.reseed_rng()


def make_sampler(name: str, seed: int, n_trials: int = 30) -> optuna.samplers.BaseSampler:
    """The named sampler, reseeded per trial from ``seed`` (see :class:`TrialSeededSampler`)."""
    factory = SAMPLERS.get(name)
    return TrialSeededSampler(lambda s: factory(s, n_trials), seed)

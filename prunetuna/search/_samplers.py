"""Optuna samplers by name, each seeded from the config and the trial number."""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from prunetuna.faults import fault
from prunetuna.registry import Registry
from prunetuna.search._study import mark_started

__all__ = ["SAMPLERS", "CandidateChooser", "TrialSeededSampler", "make_sampler", "population_size", "trial_seed"]


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


class CandidateChooser(Protocol):
    """Picks a sampler trial's params among ``count`` draws (``search.screening.candidates``, search/_candidate.py)."""

    count: int
    search_space: dict[str, BaseDistribution]  # every param of the space: all of them come from the relative sample

    def __call__(self, study: optuna.Study, trial: FrozenTrial, draws: list[dict[str, Any]]) -> dict[str, Any]: ...


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """One of :data:`SAMPLERS`, created afresh for every trial with the seed :func:`trial_seed`.

    Workers that start together would otherwise draw the same random points from equally seeded
    samplers (TPE's first trials are random); trial numbers are unique in a study, so each trial gets
    its own stream, and one process's search stays reproducible given the seed. TPE, NSGA-II, CMA-ES
    and random keep what they learn in the study's storage, so a fresh instance per trial loses
    nothing; GP loses its cache of fitted kernel parameters (it refits from the trials). One trial at
    a time per process (prunetuna runs no ``n_jobs``); ``reseed_rng`` has nothing to do.

    With a ``chooser`` of ``count`` > 1, a trial that Optuna samples (no fixed params: not an enqueued baseline or
    retry) takes all its params from one relative sample: ``count`` draws from the inner sampler (its relative
    sample of the whole space, a param it leaves out from its independent sample; each call advances its RNG, so
    the draws differ), of which the chooser returns one. Optuna records only that one, so the sampler learns from
    the vector that is fine-tuned. GP's relative sample maximizes its acquisition function: its draws often
    coincide (the chooser scores a repeated vector once); NSGA-II's child of a crossover may lack some params
    (mutation), drawn independently like any missing one.
    """

    def __init__(
        self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int, chooser: CandidateChooser | None = None
    ) -> None:
        self._factory = factory
        self._seed = seed
        self._current = factory(seed)
        self.chooser = chooser

    def _chooser(self, trial: FrozenTrial) -> CandidateChooser | None:
        """The chooser, for a trial it picks the params of (a sampled one), else None."""
        chooser = self.chooser
        chosen = chooser is not None and chooser.count > 1 and not trial.system_attrs.get("fixed_params")
        return chooser if chosen else None

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        fault("asked", trial.number)
        mark_started(study, trial)  # killed from here on, the trial is found stale and run again
        self._current = self._factory(trial_seed(self._seed, trial.number))
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        chooser = self._chooser(trial)
        if chooser is not None:
            return dict(chooser.search_space)
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        chooser = self._chooser(trial)
        if chooser is None or not search_space:
            return self._current.sample_relative(study, trial, search_space)
        return chooser(study, trial, [self._draw(study, trial, search_space) for _ in range(chooser.count)])

    def _draw(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """One point of the whole space: the inner sampler's relative sample, completed by its independent one."""
        sampled = self._current.sample_relative(study, trial, search_space)
        return {
            name: sampled[name] if name in sampled else self._current.sample_independent(study, trial, name, dist)
            for name, dist in search_space.items()
        }

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


def make_sampler(
    name: str, seed: int, n_trials: int = 30, chooser: CandidateChooser | None = None
) -> optuna.samplers.BaseSampler:
    """The named sampler, reseeded per trial from ``seed``, picking among a chooser's draws (see
    :class:`TrialSeededSampler`)."""
    factory = SAMPLERS.get(name)
    return TrialSeededSampler(lambda s: factory(s, n_trials), seed, chooser)

"""Optuna samplers by name, each seeded from the config."""

from __future__ import annotations

from typing import Callable

import optuna

__all__ = ["SAMPLERS", "make_sampler"]

def _population(n_trials: int) -> int:
    """NSGA-II's default population (50) exceeds a typical budget of 30 trials, leaving it a random
    search; about four generations fit the budget instead (at least 8 candidates each)."""
    return max(8, min(50, n_trials // 4))


SAMPLERS: dict[str, Callable[[int, int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed, n: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True),
    "nsga2": lambda seed, n: optuna.samplers.NSGAIISampler(seed=seed, population_size=_population(n)),
    "random": lambda seed, n: optuna.samplers.RandomSampler(seed=seed),
    "gp": lambda seed, n: optuna.samplers.GPSampler(seed=seed),
    "cmaes": lambda seed, n: optuna.samplers.CmaEsSampler(seed=seed),
}


def make_sampler(name: str, seed: int, n_trials: int = 30) -> optuna.samplers.BaseSampler:
    """A new sampler; ``seed`` should differ between sessions of one study so a resume draws new points."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed, n_trials)

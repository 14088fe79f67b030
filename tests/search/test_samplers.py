from __future__ import annotations

import optuna
import pytest

from prunetuna.search import SAMPLERS, make_sampler


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_is_seeded_and_samples_the_space(name: str) -> None:
    """One contract over every implementation: same seed, same points; points within bounds and steps."""
    multi = name != "cmaes"

    def run(seed: int) -> list[dict[str, float]]:
        directions = ["maximize", "minimize"] if multi else ["maximize"]
        study = optuna.create_study(directions=directions, sampler=make_sampler(name, seed))
        for _ in range(4):
            trial = study.ask()
            a = trial.suggest_float("sparsity.a", 0.0, 0.8, step=0.05)
            b = trial.suggest_float("sparsity.b", 0.0, 0.8, step=0.05)
            study.tell(trial, [1 - a * b, a + b] if multi else [1 - a * b])
        return [t.params for t in study.trials]

    first = run(7)
    assert first == run(7)
    for params in first:
        for value in params.values():
            assert 0.0 <= value <= 0.8
            assert abs(value / 0.05 - round(value / 0.05)) < 1e-6


def test_unknown_sampler() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'grid'"):
        make_sampler("grid", 0)

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


@pytest.mark.parametrize("name", ["tpe", "random", "nsga2"])
def test_workers_with_the_same_seed_draw_different_points(name: str, tmp_path) -> None:  # noqa: ANN001
    """Two processes on one study, samplers seeded alike (same config): each trial has its own stream."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=storage, study_name="shared", directions=["maximize", "minimize"])
    workers = [optuna.load_study(study_name="shared", storage=storage, sampler=make_sampler(name, 0)) for _ in range(2)]
    running = []
    for _ in range(3):
        for study in workers:  # both ask before either tells, as workers starting together do
            trial = study.ask()
            running.append(
                (study, trial, {k: trial.suggest_float(f"sparsity.{k}", 0.0, 0.8, step=0.05) for k in "abc"})
            )
    points = [tuple(p.values()) for _, _, p in running]
    assert len(set(points)) == len(points)
    for study, trial, p in running:
        study.tell(trial, [1 - p["a"], p["a"] + p["b"]])


def test_neighbouring_seeds_do_not_replay_each_other() -> None:
    """Seeds 0 and 1 are two searches, not one search shifted by a trial."""

    def points(seed: int) -> list[tuple[float, ...]]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("random", seed))
        out = []
        for _ in range(6):
            trial = study.ask()
            out.append(tuple(trial.suggest_float(f"sparsity.{k}", 0.0, 0.8, step=0.05) for k in "ab"))
            study.tell(trial, [0.5, 0.5])
        return out

    zero, one = points(0), points(1)
    assert zero != one and zero[1:] != one[:-1]  # seed + trial number made the second the first shifted by one

"""Each scoring mode on its own: directions, values, the intermediate value Optuna's pruners see, the accuracy
constraint."""

from __future__ import annotations

import pytest

from prunetuna.objectives import SCORING_MODES, Scoring, ScoringMode
from prunetuna.registry import UnknownName

METRICS = {"accuracy": 0.90, "flops_ratio": 0.40, "params_ratio": 0.50, "latency_ratio": 0.70}


def test_pareto_is_one_objective_each_in_its_direction() -> None:
    scoring = Scoring("pareto", ("accuracy", "flops", "latency"))
    assert scoring.directions == ["maximize", "minimize", "minimize"]
    assert scoring.values(METRICS) == [0.90, 0.40, 0.70]
    assert scoring.intermediate(0.8, METRICS, dense_accuracy=0.95) == 0.8
    assert scoring.accuracy_excess(0.8, 0.95) is None
    assert scoring.score_of(METRICS) is None
    assert scoring.value_names == ["accuracy", "flops_ratio", "latency_ratio"]


def test_tolerance_minimizes_the_cost_with_accuracy_loss_as_constraint() -> None:
    scoring = Scoring("tolerance", ("accuracy", "params"), accuracy_drop=0.02)
    assert scoring.directions == ["minimize"]
    assert scoring.values(METRICS) == [0.50]
    assert scoring.intermediate(0.90, METRICS, dense_accuracy=0.95) == pytest.approx(0.05)  # the accuracy lost so far
    assert scoring.accuracy_excess(0.90, 0.95) == pytest.approx(0.03)  # 5 points lost, 2 allowed
    assert scoring.accuracy_excess(0.94, 0.95) == pytest.approx(-0.01)  # feasible
    assert scoring.score_of(METRICS) is None
    assert scoring.value_names == ["params_ratio"]


def test_scalarized_maximizes_accuracy_minus_weighted_costs() -> None:
    scoring = Scoring("scalarized", ("accuracy", "flops", "params"), weights=(("flops", 0.5), ("params", 0.1)))
    assert scoring.directions == ["maximize"]
    expected = 0.90 - 0.5 * 0.40 - 0.1 * 0.50
    assert scoring.values(METRICS) == [pytest.approx(expected)]
    assert scoring.intermediate(0.80, METRICS, dense_accuracy=0.95) == pytest.approx(expected - 0.10)
    assert scoring.accuracy_excess(0.5, 0.95) is None
    assert scoring.score_of(METRICS) == pytest.approx(expected)
    assert scoring.value_names == ["score"]


def test_modes_are_strategies_in_a_registry_and_unknown_is_an_error() -> None:
    assert SCORING_MODES.names() == ("pareto", "tolerance", "scalarized")
    assert all(isinstance(mode, ScoringMode) for mode in SCORING_MODES.values())
    with pytest.raises(UnknownName, match="unknown mode 'lexicographic'; choose one of pareto, tolerance, scalarized"):
        Scoring("lexicographic", ("accuracy",))

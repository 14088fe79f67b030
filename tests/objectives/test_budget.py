from __future__ import annotations

import pytest
import torch

from prunetuna.objectives import (
    CostContext,
    lowest_fitting,
    measure_costs,
    parse_budgets,
    project_onto_budget,
    within_budgets,
)
from prunetuna.spaces import PruningSpace
from prunetuna.workload import TinyResNet


def test_parse_ratio_and_absolute_budgets() -> None:
    budgets = {b.key: b for b in parse_budgets({"flops": 0.5, "latency_ms": 3.0, "params_count": 1000})}
    assert budgets["flops"].metric == "flops_ratio" and not budgets["flops"].absolute
    assert budgets["latency_ms"].metric == "latency_ms" and budgets["latency_ms"].cost == "latency"
    assert budgets["params_count"].metric == "params"
    assert budgets["flops"].excess({"flops_ratio": 0.25}) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="unknown constraint"):
        parse_budgets({"speed": 1.0})


def test_projection_fits_the_budget_with_the_smallest_uniform_move() -> None:
    example = torch.randn(2, 1, 28, 28)
    model = TinyResNet(width=8)
    space = PruningSpace.from_model(model, example, max_sparsity=0.8, step=0.05)
    dense = measure_costs(model, example)
    [budget] = parse_budgets({"flops": 0.3})
    measured: list[dict[str, float]] = []

    def measure(vector: dict[str, float]) -> dict[str, float]:
        measured.append(vector)
        return measure_costs(space.apply(vector), CostContext(example), dense, ("flops",))

    sampled = {name: 0.1 for name in space.names}
    assert not within_budgets([budget], measure(sampled))
    projection = project_onto_budget(sampled, [budget], measure, max_sparsity=0.8, step=0.05)
    assert projection.fits and projection.metrics["flops_ratio"] <= 0.3
    assert all(0.1 <= r <= 0.8 and abs(r / 0.05 - round(r / 0.05)) < 1e-6 for r in projection.vector.values())
    # one grid step less in every dimension would be over budget: the move is the smallest
    smaller = {n: round(max(r - 0.05, 0.1), 6) for n, r in projection.vector.items()}
    assert not within_budgets([budget], measure(smaller))
    assert projection.evaluations <= 9


def test_projection_reports_an_unreachable_budget() -> None:
    [budget] = parse_budgets({"params": 0.5})
    projection = project_onto_budget({"a": 0.0}, [budget], lambda v: {"params_ratio": 0.9}, max_sparsity=0.5, step=0.1)
    assert not projection.fits and projection.vector == {"a": 0.5}


def test_projection_keeps_each_dimension_within_its_own_bound() -> None:
    """Bounds from a sensitivity scan are per dimension: the move toward them never passes one."""
    [budget] = parse_budgets({"flops": 0.5})
    bounds = {"a": 0.3, "b": 0.8}

    def measure(vector: dict[str, float]) -> dict[str, float]:
        return {"flops_ratio": 1.0 - (vector["a"] + vector["b"]) / 2}

    projection = project_onto_budget({"a": 0.0, "b": 0.0}, [budget], measure, max_sparsity=bounds, step=0.05)
    assert projection.fits and projection.vector["a"] <= 0.3 and projection.vector["b"] <= 0.8
    assert projection.metrics["flops_ratio"] <= 0.5
    at_bounds = project_onto_budget(
        {"a": 0.0, "b": 0.0}, parse_budgets({"flops": 0.4}), measure, max_sparsity=bounds, step=0.05
    )
    assert not at_bounds.fits and at_bounds.vector == bounds


def test_lowest_fitting_bisects_to_the_smallest_knob_that_fits() -> None:
    calls: list[float] = []

    def candidate(knob: float) -> float:
        calls.append(knob)
        return knob

    knob = lowest_fitting(candidate, lambda v: v >= 0.3, high=1.0, iterations=10)
    assert knob is not None and 0.3 <= knob < 0.3 + 1.0 / 2**10 + 1e-12
    assert calls[0] == 1.0 and len(calls) == 11  # the top first, then one candidate per halving
    assert lowest_fitting(candidate, lambda v: v > 2.0, high=1.0) is None


def test_relative_allocations_are_scaled_onto_the_budget_within_one_channel() -> None:
    from prunetuna.objectives import scale_onto_budget

    example = torch.randn(2, 1, 28, 28)
    model = TinyResNet(width=8)
    space = PruningSpace.from_model(model, example, max_sparsity=0.8, step=0.05)
    dense = measure_costs(model, example)
    [budget] = parse_budgets({"flops": 0.4})
    caps = {name: 0.8 for name in space.names}
    channels = {d.name: d.channels for d in space.dimensions}

    def measure(vector: dict[str, float]) -> dict[str, float]:
        return measure_costs(space.apply(vector, structure_only=True), CostContext(example), dense, ("flops",))

    shares = [0.05 * (1 + i % 4) for i in range(len(space.names))]
    for factor in (0.3, 3.0):  # a sample well under the budget is pruned less, one over it more
        sampled = {name: round(share * factor, 6) for name, share in zip(space.names, shares)}
        fitted = scale_onto_budget(sampled, [budget], measure, max_sparsity=caps, channels=8)
        assert fitted.fits and fitted.metrics["flops_ratio"] <= 0.4
        s = fitted.t
        # the same relative allocation (ratios in proportion wherever no cap binds) ...
        for name, ratio in sampled.items():
            assert fitted.vector[name] == pytest.approx(min(ratio * s, 0.8), abs=1e-6)
        # ... and one channel less pruned in the widest dimension would miss the budget: it sits on it
        widest = max(channels, key=lambda n: channels[n] * sampled[n])
        step = 1.0 / channels[widest] / sampled[widest]
        below = {name: round(min(ratio * max(s - step, 0.0), 0.8), 6) for name, ratio in sampled.items()}
        assert measure(below)["flops_ratio"] > 0.4

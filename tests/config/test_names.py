"""The torch-free names the config validates against are exactly the names the registries hold:
adding a cost, a sampler, a backend, a rule, a mode or a method in one place and not the other fails here."""

from __future__ import annotations

from prunetuna.config import _experiment as config
from prunetuna.config import _names as names
from prunetuna.export import EXPORTERS, FLAVORS
from prunetuna.objectives import COSTS, LATENCY_BACKENDS, OBJECTIVES, SCORING_MODES, parse_budgets
from prunetuna.search import EARLY_STOPPING, SAMPLERS
from prunetuna.spaces import IMPORTANCES, METHODS, NEEDS_GRADIENTS


def test_every_registry_holds_the_declared_names() -> None:
    assert COSTS.names() == names.COST_NAMES
    assert OBJECTIVES.names() == names.OBJECTIVE_NAMES
    assert SCORING_MODES.names() == names.MODE_NAMES
    assert METHODS.names() == names.METHOD_NAMES
    assert SAMPLERS.names() == names.SAMPLER_NAMES
    assert EARLY_STOPPING.names() == names.EARLY_STOPPING_NAMES
    assert IMPORTANCES.names() == names.IMPORTANCE_NAMES
    assert LATENCY_BACKENDS.names() == names.LATENCY_BACKEND_NAMES
    assert EXPORTERS.names() == FLAVORS.names() == names.EXPORT_FORMATS
    assert NEEDS_GRADIENTS == set(names.GRADIENT_IMPORTANCES) <= set(names.IMPORTANCE_NAMES)
    assert set(names.SINGLE_OBJECTIVE_SAMPLERS) <= set(names.SAMPLER_NAMES)
    assert set(names.SINGLE_OBJECTIVE_PRUNERS) <= set(names.EARLY_STOPPING_NAMES)


def test_costs_agree_on_metrics_units_and_budget_keys() -> None:
    for name, cost in COSTS.items():
        assert (cost.metric, cost.unit) == (names.COST_INFO[name].metric, names.COST_INFO[name].unit)
        assert OBJECTIVES[name].metric == f"{name}_ratio"
    for key, cost in names.ABSOLUTE_BUDGETS.items():
        [budget] = parse_budgets({key: 1.0})
        assert budget.absolute and budget.cost == cost and budget.metric == COSTS[cost].metric


def test_the_config_accepts_every_registered_name() -> None:
    base = {"name": "n", "objectives": ["accuracy"]}
    for sampler in SAMPLERS:
        assert config.parse_config({**base, "search": {"sampler": sampler}}).search.sampler == sampler
    for rule in EARLY_STOPPING:
        assert config.parse_config({**base, "search": {"pruner": rule}}).search.pruner == rule
    for importance in IMPORTANCES:
        assert config.parse_config({**base, "pruning": {"importance": importance}}).pruning.importance == importance
    for method in METHODS:
        assert config.parse_config({**base, "pruning": {"method": method}}).pruning.method == method
    for backend in LATENCY_BACKENDS:
        extra = {"url": "http://127.0.0.1:8765"} if backend == "remote" else {}  # the device agent needs its URL
        assert config.parse_config({**base, "latency": {"backend": backend, **extra}}).latency.backend == backend
    for objective in OBJECTIVES:
        assert (
            objective
            in config.parse_config({**base, "objectives": list(dict.fromkeys(["accuracy", objective]))}).objectives
        )
    for cost in COSTS:
        assert config.parse_config({**base, "constraints": {cost: 0.5}}).constraints == {cost: 0.5}
    modes = [
        config.parse_config({**base, "objectives": ["accuracy", "flops"], **extra}).mode
        for extra in ({}, {"tolerance": {"accuracy_drop": 0.01}}, {"scalarize": {"flops": 1.0}})
    ]
    assert tuple(modes) == SCORING_MODES.names()


def test_the_config_and_the_names_stay_torch_free() -> None:
    import subprocess
    import sys

    code = (
        "import sys, prunetuna.config, prunetuna.config._names, prunetuna.registry; "
        "sys.exit('torch' in sys.modules or 'optuna' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0, (
        "importing the config pulled in torch or optuna"
    )

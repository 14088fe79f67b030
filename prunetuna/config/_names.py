"""The names of every built-in pluggable part, in one torch-free place.

The config validates names against these tuples before anything heavy is imported (start-up speed);
the parts themselves live in :class:`prunetuna.registry.Registry` objects next to their code, and
``tests/config/test_names.py`` checks that each registry holds exactly the names declared here. Adding a
cost, a sampler, a latency backend or an early-stopping rule: register it, and name it here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ABSOLUTE_BUDGETS",
    "CHEAP_COSTS",
    "COST_INFO",
    "COST_NAMES",
    "CostInfo",
    "EARLY_STOPPING_NAMES",
    "EXPORT_FORMATS",
    "GRADIENT_IMPORTANCES",
    "IMPORTANCE_NAMES",
    "LATENCY_BACKEND_NAMES",
    "METHOD_NAMES",
    "MODE_NAMES",
    "OBJECTIVE_NAMES",
    "SAMPLER_NAMES",
    "SINGLE_OBJECTIVE_PRUNERS",
    "SINGLE_OBJECTIVE_SAMPLERS",
]


@dataclass(frozen=True)
class CostInfo:
    """A cost as the config, the report and the plots name it.

    ``metric`` is the key of its absolute value in a trial's metrics (``<name>_ratio`` is the ratio to
    the dense model); ``absolute`` is the budget key of an absolute amount (``constraints``). A ``cheap``
    cost is counted, not timed: measured on every candidate, and on the many candidates of a projection.
    """

    name: str
    metric: str
    absolute: str
    unit: str
    label: str
    cheap: bool = True

    @property
    def ratio(self) -> str:
        return f"{self.name}_ratio"


COST_INFO: dict[str, CostInfo] = {
    cost.name: cost
    for cost in (
        CostInfo("flops", "flops", "flops_count", "FLOPs", "FLOPs"),
        CostInfo("params", "params", "params_count", "parameters", "params"),
        CostInfo("size", "size_bytes", "size_bytes", "bytes", "size"),
        CostInfo("latency", "latency_ms", "latency_ms", "ms", "latency", cheap=False),
    )
}
COST_NAMES = tuple(COST_INFO)
CHEAP_COSTS = tuple(name for name, cost in COST_INFO.items() if cost.cheap)
OBJECTIVE_NAMES = ("accuracy", *COST_NAMES)
ABSOLUTE_BUDGETS = {cost.absolute: cost.name for cost in COST_INFO.values()}
"""Budget keys: a cost name is a ratio to the dense model; these name an absolute amount of a cost."""

MODE_NAMES = ("pareto", "tolerance", "scalarized")
METHOD_NAMES = ("structured", "unstructured", "nm")
SAMPLER_NAMES = ("tpe", "nsga2", "random", "gp", "cmaes")
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
EARLY_STOPPING_NAMES = ("none", "median", "hyperband", "dominated")
SINGLE_OBJECTIVE_PRUNERS = ("median", "hyperband")
"""Optuna's pruners: they do not apply to multi-objective studies."""
IMPORTANCE_NAMES = ("l1", "l2", "bn_scale", "taylor", "random")
GRADIENT_IMPORTANCES = ("taylor",)
"""Criteria that read ``.grad``: the pruned copy gets a few batches of gradients first."""
LATENCY_BACKEND_NAMES = ("torch", "onnxruntime", "remote")
EXPORT_FORMATS = ("onnx", "torchscript", "pt", "ultralytics")

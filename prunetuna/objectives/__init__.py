"""What a candidate is scored on: costs measured on the pruned copy (FLOPs, parameters, size, latency on
this machine or the edge device), budgets, and the objectives with their Optuna direction.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_budget": (
        "Budget",
        "Projection",
        "lowest_fitting",
        "parse_budgets",
        "project_onto_budget",
        "scale_onto_budget",
        "within_budgets",
    ),
    "_costs": ("COSTS", "Cost", "CostContext", "count_flops", "count_params", "measure_costs", "serialized_size"),
    "_latency": (
        "LATENCY_BACKENDS",
        "LatencyResult",
        "LatencySettings",
        "export_onnx",
        "measure_latency",
        "portable_attention",
    ),
    "_latency_cache": (
        "CACHE_CONFIRMATIONS",
        "CACHE_SAMPLES",
        "LatencyCache",
        "PREFIX",
        "architecture_key",
        "latency_context",
        "lower_median",
    ),
    "_outputs": ("FlatOutputs", "output_leaves", "output_names"),
    "_objectives": ("OBJECTIVES", "Objective", "SCORING_MODES", "Scoring", "ScoringMode", "objective_values"),
    "_remote": ("DEFAULT_PROVIDER", "REMOTE", "RemoteBackend", "latency_device"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

"""The YAML experiment: its pydantic models (frozen, unknown keys refused), the vocabulary of names it
accepts, and the dotted ``module:attr`` targets it points at.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_experiment": (
        "BaselineConfig",
        "DataConfig",
        "DistillConfig",
        "ExperimentConfig",
        "FinetuneConfig",
        "LatencyConfig",
        "MetricConfig",
        "ModelConfig",
        "PruningConfig",
        "SearchConfig",
        "SensitivityBounds",
        "ToleranceConfig",
        "TrainerConfig",
        "config_section",
        "load_config",
        "parse_config",
    ),
    "_finetune_sections": (
        "ACCELERATORS",
        "DistillConfig",
        "FinalFinetuneConfig",
        "FinetuneConfig",
        "PRECISIONS",
        "TrainerConfig",
    ),
    "_names": (
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
    ),
    "_sections": (
        "BaselineConfig",
        "DataConfig",
        "LatencyConfig",
        "MetricConfig",
        "ModelConfig",
        "PruningConfig",
        "ScreeningConfig",
        "PromoteConfig",
        "SearchConfig",
        "SensitivityBounds",
        "ToleranceConfig",
    ),
    "_targets": ("call_target", "import_target", "one_line"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

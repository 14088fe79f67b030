"""What a candidate is scored on: costs measured on the pruned copy, accuracy after a Lightning fine-tune.

Costs are measured before any training (cheap); objectives carry their Optuna direction.
"""

from __future__ import annotations

from prunetuna.objectives._costs import COSTS, count_flops, count_params, measure_costs
from prunetuna.objectives._finetune import ClassifierModule, FinetuneResult, evaluate_accuracy, fine_tune
from prunetuna.objectives._objectives import OBJECTIVES, Objective, objective_values

__all__ = [
    "COSTS",
    "OBJECTIVES",
    "ClassifierModule",
    "FinetuneResult",
    "Objective",
    "count_flops",
    "count_params",
    "evaluate_accuracy",
    "fine_tune",
    "measure_costs",
    "objective_values",
]

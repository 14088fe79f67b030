"""What a candidate is scored on: costs measured on the pruned copy, accuracy after a Lightning fine-tune.

Costs are measured before any training (cheap); objectives carry their Optuna direction.
"""

from __future__ import annotations

from prunetuna.objectives._budget import Budget, Projection, lowest_fitting, parse_budgets, project_onto_budget, within_budgets
from prunetuna.objectives._costs import COSTS, Cost, CostContext, count_flops, count_params, measure_costs, serialized_size
from prunetuna.objectives._distill import Distillation, distillation_loss
from prunetuna.objectives._finetune import ClassifierModule, FinetuneResult, evaluate_accuracy, fine_tune, recalibrate_batchnorm
from prunetuna.objectives._latency import LATENCY_BACKENDS, LatencyResult, LatencySettings, export_onnx, measure_latency, portable_attention
from prunetuna.objectives._objectives import OBJECTIVES, SCORING_MODES, Objective, Scoring, ScoringMode, objective_values
from prunetuna.objectives._trainer import TrainerSetup, check_finetune, finetune_options, trainer_setup

__all__ = [
    "COSTS",
    "LATENCY_BACKENDS",
    "Budget",
    "Cost",
    "CostContext",
    "Distillation",
    "TrainerSetup",
    "check_finetune",
    "distillation_loss",
    "finetune_options",
    "trainer_setup",
    "LatencyResult",
    "LatencySettings",
    "Projection",
    "SCORING_MODES",
    "Scoring",
    "ScoringMode",
    "export_onnx",
    "lowest_fitting",
    "measure_latency",
    "parse_budgets",
    "portable_attention",
    "project_onto_budget",
    "recalibrate_batchnorm",
    "serialized_size",
    "within_budgets",
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

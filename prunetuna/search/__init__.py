"""The trial loop: the plan, candidates drawn by the sampler, screening and early stopping, the runner, and
the workers that share one study.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_candidate": ("Candidate", "CandidateScreen", "Screened", "build_candidate", "draw_candidate"),
    "_early_stopping": (
        "EARLY_STOPPING",
        "EarlyStoppingRule",
        "EpochRecord",
        "Promotion",
        "RungPoint",
        "StopContext",
        "StopDecision",
        "TrialPruningCallback",
        "dominance_decision",
        "dominated_count",
        "epoch_records",
        "make_pruner",
        "optuna_decision",
        "rung_points",
    ),
    "_events": ("SearchEvents", "SearchOutcome", "SearchStopped", "StepTimer", "StudyPresentation", "TrialEvent"),
    "_outcome": ("completed", "drawn", "failed", "over_budget", "stopped"),
    "_plan": (
        "CheckedInputs",
        "TrialPlan",
        "build_plan",
        "calibration_batches",
        "check_inputs",
        "prepare_space",
        "trial_settings",
    ),
    "_run": ("run_search",),
    "_runner": ("ProfileDrawer", "SURPLUS", "SurplusTrial", "TrialRunner"),
    "_samplers": (
        "SAMPLERS",
        "CandidateChooser",
        "TrialSeededSampler",
        "make_sampler",
        "population_size",
        "trial_seed",
    ),
    "_screening": (
        "Choice",
        "ScreenPoint",
        "Screening",
        "choose_candidate",
        "earlier_points",
        "hypervolume",
        "pre_finetune_score",
        "screen_point",
    ),
    "_study": (
        "FINISHED_STATES",
        "NeverStarted",
        "check_existing",
        "count_finished",
        "enqueue_again",
        "mark_started",
        "open_study",
        "retry_later",
    ),
    "_warm_start": ("Baselines", "bisection_steps", "enqueue_baselines", "preset_vector"),
    "_workers": ("WorkerLauncher", "cuda_device_count", "worker_device_env"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

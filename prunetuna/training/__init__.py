"""The Lightning fine-tune of a candidate: the built-in classifier or the user's LightningModule (a task),
the Trainer settings, BN recalibration, accuracy, and distillation from the dense model.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_distill": ("Distillation", "HOOK", "distillation_loss", "use_distillation_hook"),
    "_finetune": (
        "ClassifierModule",
        "EpochRecorder",
        "FinetuneResult",
        "evaluate_accuracy",
        "fine_tune",
        "recalibrate_batchnorm",
    ),
    "_task": ("ClassifierTask", "ModuleTask", "Task", "resolve_prune_path"),
    "_trainer": ("TrainerSetup", "check_finetune", "finetune_options", "trainer_setup"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

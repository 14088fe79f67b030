"""The keys a study is written under, in one place: how a trial ended, MLflow run statuses, run roles and tags.

The strings are the MLflow layout users filter on (docs/design.md, "MLflow layout"): changing one breaks
their queries, and studies written before.
"""

from __future__ import annotations

import enum

__all__ = ["Role", "RunStatus", "Tag", "TrialEnd"]


class TrialEnd(str, enum.Enum):
    """How a trial ended, as Optuna names its state (the ``optuna.state`` tag of the trial's run)."""

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"

    @property
    def finished(self) -> bool:
        """COMPLETE and PRUNED count towards ``n_trials``; their run ends FINISHED."""
        return self is not TrialEnd.FAIL


class RunStatus(str, enum.Enum):
    """An MLflow run's status."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Role(str, enum.Enum):
    """What a run of the study's experiment is (the ``prunetuna.role`` tag)."""

    STUDY = "study"  # the parent run
    SUPERSEDED = "study-superseded"  # a parent run created by a worker that lost the election (store/_election.py)
    TRIAL = "trial"
    SENSITIVITY = "sensitivity"
    EXPORT = "export"
    FINETUNE = "finetune"  # prunetuna finetune: a child of the trial's run


class Tag:
    """Run tag keys."""

    ROLE = "prunetuna.role"
    ORIGIN = "prunetuna.origin"  # sampler, or the baseline that enqueued the trial
    BUDGET = "prunetuna.budget"
    FEASIBLE = "prunetuna.feasible"
    BELOW_CHANCE = "prunetuna.below_chance"  # "true" on a built-in classifier's COMPLETE trial at or below 1/classes
    FAIL_REASON = "prunetuna.fail_reason"
    PRUNED_REASON = "prunetuna.pruned_reason"
    STUDY = "prunetuna.study"
    TRIAL = "prunetuna.trial"
    FORMAT = "prunetuna.format"
    SOURCE_RUN = "prunetuna.source_run_id"
    SUPERSEDED_BY = "prunetuna.superseded_by"  # on a superseded parent run: the parent run that won
    FINETUNE_KEY = "prunetuna.finetune_key"  # the final_finetune settings (and the trial's run) a fine-tune ran with
    STATE = "optuna.state"  # RUNNING, then the TrialEnd
    TRIAL_NUMBER = "optuna.trial_number"
    PARENT = "mlflow.parentRunId"
    EXPERIMENT_KIND = "mlflow.experimentKind"  # the MLflow UI then opens the study on its training runs

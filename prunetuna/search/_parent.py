"""The study's one MLflow parent run, whatever the number of workers: the process that created the study
creates it (and enqueues the baselines); the others wait for the id it publishes in the study."""

from __future__ import annotations

import time
from typing import Callable

import optuna

from prunetuna.search._plan import TrialPlan, trial_settings
from prunetuna.search._stores import Workspace, mask_url
from prunetuna.search._tracking import StudyTracker
from prunetuna.search._warm_start import enqueue_baselines
from prunetuna.trial_record import StudyRecord, set_study_fields

__all__ = ["PARENT_WAIT_S", "coordinate_parent", "parent_params"]

PARENT_WAIT_S = 600.0  # how long a worker waits for the parent run of a study another worker is preparing


def parent_params(plan: TrialPlan, workspace: Workspace) -> dict[str, object]:
    """The study's settings, logged once as the parent run's params."""
    config = plan.config
    return {
        "seed": config.seed,
        "objectives": ",".join(config.objectives),
        "constraints": str(dict(config.constraints)),
        "search.sampler": config.search.sampler,
        "storage": mask_url(workspace.storage_url),
        "mode": config.mode,
        "tolerance": config.tolerance.accuracy_drop if config.tolerance else "",
        "scalarize": str(config.scalarize or ""),
        **{f"latency.{k}": v for k, v in plan.context.latency.__dict__.items()},
        **({f"device.{k}": v for k, v in plan.context.cache.device.items()} if plan.context.cache is not None else {}),
        **{f"dense.{k}": v for k, v in plan.dense.items()},
        **trial_settings(config),
    }


def _published_parent(study: optuna.Study, on_wait: Callable[[], None]) -> str | None:
    """The parent run id the study's creator published; waits while a creator is still preparing the
    study (its warm start, its parent run), so that workers starting together share its run."""
    deadline = time.monotonic() + PARENT_WAIT_S
    told = False
    while True:
        attrs = study.user_attrs
        record = StudyRecord.of(attrs)
        if record.mlflow_parent_run_id is not None:
            return record.mlflow_parent_run_id
        # created_at is written just after the study: a study with no trials and no attribute is that moment
        fresh = (record.created_at is None and not study.get_trials(deepcopy=False)) or (
            record.created_at is not None and time.time() - float(record.created_at) < PARENT_WAIT_S)
        if not fresh or time.monotonic() > deadline:
            return None  # its creator is gone: StudyTracker.start_parent settles it (earliest run wins)
        if not told:
            on_wait()
            told = True
        time.sleep(0.5)


def coordinate_parent(study: optuna.Study, created: bool, plan: TrialPlan, tracker: StudyTracker, workspace: Workspace,
                      on_wait: Callable[[], None]) -> str:
    """The parent run id, shared by every worker; the baselines are enqueued once (by the creator, or by a
    resumed study whose config now asks for them)."""
    params = parent_params(plan, workspace)
    if created:
        enqueue_baselines(study, plan)
        parent = tracker.start_parent(None, params)
        set_study_fields(study, mlflow_parent_run_id=parent)
        return parent
    hint = _published_parent(study, on_wait)
    parent = tracker.start_parent(hint, params)
    if hint != parent:
        set_study_fields(study, mlflow_parent_run_id=parent)
    enqueue_baselines(study, plan)
    return parent

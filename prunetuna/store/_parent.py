"""The study's one MLflow parent run, whatever the number of workers: the process that created the study
creates it; the others wait for the id it publishes in the study."""

from __future__ import annotations

import time
from typing import Callable

import optuna

from prunetuna.store._records import StudyRecord, set_study_fields
from prunetuna.store._tracking import StudyTracker

__all__ = ["PARENT_WAIT_S", "coordinate_parent"]

PARENT_WAIT_S = 600.0  # how long a worker waits for the parent run of a study another worker is preparing


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
            record.created_at is not None and time.time() - float(record.created_at) < PARENT_WAIT_S
        )
        if not fresh or time.monotonic() > deadline:
            return None  # its creator is gone: StudyTracker.start_parent settles it (earliest run wins)
        if not told:
            on_wait()
            told = True
        time.sleep(0.5)


def coordinate_parent(
    study: optuna.Study, created: bool, params: dict[str, object], tracker: StudyTracker, on_wait: Callable[[], None]
) -> str:
    """The parent run id, shared by every worker, with the study's settings ``params``: the creator starts it;
    the others take the one it published (or settle on the earliest run when it is gone)."""
    if created:
        parent = tracker.start_parent(None, params)
        set_study_fields(study, mlflow_parent_run_id=parent)
        return parent
    hint = _published_parent(study, on_wait)
    parent = tracker.start_parent(hint, params)
    if hint != parent:
        set_study_fields(study, mlflow_parent_run_id=parent)
    return parent

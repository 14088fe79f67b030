"""The study: samplers, storage, the trial loop with resume, and MLflow tracking."""

from __future__ import annotations

from prunetuna.search._loop import (
    FINISHED_STATES,
    SearchOutcome,
    SearchStopped,
    TrialRecord,
    TrialRunner,
    count_finished,
    prepare_space,
    run_search,
)
from prunetuna.search._rebuild import RebuiltTrial, rebuild_trial, select_trial
from prunetuna.search._samplers import SAMPLERS, make_sampler
from prunetuna.search._sensitivity import SensitivityScan, bounds_from_scan, run_sensitivity, scan_sensitivity
from prunetuna.search._stores import Workspace, load_study, mask_url, open_storage, resolve_workspace
from prunetuna.search._tracking import StudyTracker

__all__ = [
    "FINISHED_STATES",
    "SAMPLERS",
    "RebuiltTrial",
    "SearchOutcome",
    "SearchStopped",
    "SensitivityScan",
    "StudyTracker",
    "TrialRecord",
    "TrialRunner",
    "Workspace",
    "count_finished",
    "load_study",
    "make_sampler",
    "mask_url",
    "open_storage",
    "prepare_space",
    "bounds_from_scan",
    "rebuild_trial",
    "run_sensitivity",
    "scan_sensitivity",
    "select_trial",
    "resolve_workspace",
    "run_search",
]

"""The study: samplers, storage, the trial loop with resume, and MLflow tracking.

Names are imported from their private modules on first use: ``prunetuna report`` and ``ui`` need
only the storage, and importing the trial loop pulls in Lightning and torch (seconds per command).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunetuna.search._events import SearchEvents, SearchOutcome, SearchStopped, StudyPresentation, TrialEvent
    from prunetuna.search._plan import TrialPlan, calibration_batches, prepare_space
    from prunetuna.search._rebuild import RebuiltTrial, rebuild_trial, select_trial
    from prunetuna.search._run import run_search
    from prunetuna.search._runner import TrialRunner
    from prunetuna.search._samplers import SAMPLERS, make_sampler
    from prunetuna.search._sensitivity import SensitivityScan, bounds_from_scan, scan_sensitivity
    from prunetuna.search._sensitivity_run import log_sensitivity, scan_study
    from prunetuna.search._stores import Workspace, load_study, mask_url, open_storage, resolve_workspace
    from prunetuna.search._study import FINISHED_STATES, count_finished
    from prunetuna.search._tracking import StudyTracker
    from prunetuna.search._workers import WorkerLauncher

_MODULES = {
    "_events": ("SearchEvents", "SearchOutcome", "SearchStopped", "StudyPresentation", "TrialEvent"),
    "_plan": ("TrialPlan", "calibration_batches", "prepare_space"),
    "_rebuild": ("RebuiltTrial", "rebuild_trial", "select_trial"),
    "_run": ("run_search",),
    "_runner": ("TrialRunner",),
    "_samplers": ("SAMPLERS", "make_sampler"),
    "_sensitivity": ("SensitivityScan", "bounds_from_scan", "scan_sensitivity"),
    "_sensitivity_run": ("log_sensitivity", "scan_study"),
    "_stores": ("Workspace", "load_study", "mask_url", "open_storage", "resolve_workspace"),
    "_study": ("FINISHED_STATES", "count_finished"),
    "_tracking": ("StudyTracker",),
    "_workers": ("WorkerLauncher",),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "FINISHED_STATES",
    "RebuiltTrial",
    "SAMPLERS",
    "SearchEvents",
    "SearchOutcome",
    "SearchStopped",
    "SensitivityScan",
    "StudyPresentation",
    "StudyTracker",
    "TrialEvent",
    "TrialPlan",
    "TrialRunner",
    "WorkerLauncher",
    "Workspace",
    "bounds_from_scan",
    "calibration_batches",
    "count_finished",
    "load_study",
    "log_sensitivity",
    "make_sampler",
    "mask_url",
    "open_storage",
    "prepare_space",
    "rebuild_trial",
    "resolve_workspace",
    "run_search",
    "scan_sensitivity",
    "scan_study",
    "select_trial",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

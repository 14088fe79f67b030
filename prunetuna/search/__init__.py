"""The study: samplers, storage, the trial loop with resume, and MLflow tracking.

Names are imported from their private modules on first use: ``prunetuna report`` and ``ui`` need
only the storage, and importing the trial loop pulls in Lightning and torch (seconds per command).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULES = {
    "_loop": ("FINISHED_STATES", "SearchOutcome", "SearchStopped", "TrialRecord", "TrialRunner", "count_finished",
              "prepare_space", "run_search"),
    "_rebuild": ("RebuiltTrial", "rebuild_trial", "select_trial"),
    "_samplers": ("SAMPLERS", "make_sampler"),
    "_sensitivity": ("SensitivityScan", "bounds_from_scan", "run_sensitivity", "scan_sensitivity"),
    "_stores": ("Workspace", "load_study", "mask_url", "open_storage", "resolve_workspace"),
    "_tracking": ("StudyTracker",),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

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
    "bounds_from_scan",
    "count_finished",
    "load_study",
    "make_sampler",
    "mask_url",
    "open_storage",
    "prepare_space",
    "rebuild_trial",
    "resolve_workspace",
    "run_search",
    "run_sensitivity",
    "scan_sensitivity",
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

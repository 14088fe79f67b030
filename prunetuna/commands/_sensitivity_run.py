"""``prunetuna sensitivity``'s study side: the scan of the dense baseline (cached in the work dir) saved as
JSON, then logged as a ``sensitivity`` child run of the study's parent run with the files the command drew."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from prunetuna.allocations import ScanProgress, SensitivityScan, bounds_from_scan, cached_scan
from prunetuna.config import ExperimentConfig
from prunetuna.search import calibration_batches, prepare_space, trial_settings
from prunetuna.store import RunStatus, StudyTracker, Workspace
from prunetuna.workload import load_workload, prepare_baseline

__all__ = ["StudyScan", "log_sensitivity", "scan_study"]


@dataclass(frozen=True)
class StudyScan:
    scan: SensitivityScan
    bounds: dict[str, float] | None  # pruning.bounds_from_sensitivity's bounds, when the config asks for them
    json_path: Path

    def as_dict(self, study: str) -> dict:
        return {"study": study, "scan": self.scan.as_dict(), "bounds": self.bounds}


def scan_study(config: ExperimentConfig, workspace: Workspace, on_step: ScanProgress | None = None) -> StudyScan:
    """Scan (or reuse the cached scan of) the config's dense baseline; written to ``<workdir>/sensitivity.json``."""
    workload = load_workload(config)
    space = prepare_space(config, workload)
    StudyTracker(workspace, config.name).connect(
        create=True
    )  # a tracking store that cannot be used is found before the work
    prepare_baseline(config, workload, workspace.workdir)
    batches = calibration_batches(workload, max(config.pruning.calibration_batches, 1))
    scan = cached_scan(config, workload, space, batches, workspace.workdir, on_step)
    bounds = None
    if config.pruning.bounds_from_sensitivity is not None:
        bounds = bounds_from_scan(scan, config.pruning.bounds_from_sensitivity.max_drop, space.step)
    result = StudyScan(scan, bounds, workspace.workdir / "sensitivity.json")
    result.json_path.write_text(json.dumps(result.as_dict(config.name), indent=2))
    return result


def log_sensitivity(config: ExperimentConfig, workspace: Workspace, result: StudyScan, files: Sequence[Path]) -> str:
    """The ``sensitivity`` run under the study's parent run (created when there is none yet); its id."""
    tracker = StudyTracker(workspace, config.name)
    tracker.connect(create=True)
    tracker.start_parent(None, {"seed": config.seed, **trial_settings(config)})
    run_id = tracker.log_side_run(
        "sensitivity", [result.json_path, *files], {"grid": ",".join(f"{g:g}" for g in result.scan.grid)}
    )
    tracker.end_parent(RunStatus.FINISHED.value)
    return run_id

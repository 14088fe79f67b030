"""Shared by search_vs_baselines.py, workers_throughput.py and early_stopping.py: waiting for a free
machine, other processes' CPU use, the machine, 2-D hypervolume and small config helpers.

Linux only for the CPU accounting (/proc); elsewhere those figures are None.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from statistics import mean, stdev
from typing import Iterable, Sequence

from _machine import busy_cpu_seconds, own_cpu_seconds

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "experiments" / "mnist.yaml"
BUSY_MARKERS = ("experiments/benchmarks/", "pytest")  # another benchmark or a test run would skew timings


def _own_tree() -> set[int]:
    """This process, its ancestors and its descendants (not "other" processes)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    mine, pid = {os.getpid()}, os.getpid()
    while pid in parents and parents[pid] > 1:
        pid = parents[pid]
        mine.add(pid)
    grew = True
    while grew:
        kids = {p for p, parent in parents.items() if parent in mine and p not in mine}
        mine |= kids
        grew = bool(kids)
    return mine


def other_benchmarks() -> list[str]:
    """Command lines of other benchmark scripts and pytest runs now running."""
    found, mine = [], _own_tree()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if "python" in command and any(marker in command for marker in BUSY_MARKERS):
            found.append(command[:160])
    return found


def others_cpu_share(window_s: float = 5.0) -> float | None:
    """Share of one CPU that other processes used over ``window_s`` seconds (this process sleeps meanwhile)."""
    busy0, own0, t0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    time.sleep(window_s)
    busy1 = busy_cpu_seconds()
    if busy0 is None or busy1 is None:
        return None
    return (busy1 - busy0 - (own_cpu_seconds() - own0)) / (time.perf_counter() - t0)


def wait_for_free_machine(poll_s: float = 20.0, timeout_s: float = 1200.0, max_share: float = 0.15) -> dict:
    """Poll every ``poll_s`` until no other benchmark or pytest runs and other processes use under
    ``max_share`` of one CPU (any busy script counts, e.g. an ad-hoc one in /tmp); at most ``timeout_s``."""
    start = time.monotonic()
    while True:
        others = other_benchmarks()
        share = None if others else others_cpu_share()
        if (not others and (share is None or share < max_share)) or time.monotonic() - start >= timeout_s:
            break
        why = (
            f"{len(others)} other benchmark/pytest process(es), e.g. {others[0]}"
            if others
            else f"other processes use {100 * share:.0f}% of one CPU"
        )
        print(f"  waiting: {why}", flush=True)
        time.sleep(poll_s)
    return {
        "waited_s": round(time.monotonic() - start, 1),
        "still_running": others,
        "others_cpu_share_before": None if share is None else round(share, 3),
    }


class CpuMeter:
    """Context manager: wall time, and CPU-seconds other processes used meanwhile (~0 on a quiet machine)."""

    def __enter__(self) -> CpuMeter:
        self.busy0, self.own0, self.t0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self.t0
        busy1 = busy_cpu_seconds()
        self.other_cpu_s = (
            None if busy1 is None or self.busy0 is None else busy1 - self.busy0 - (own_cpu_seconds() - self.own0)
        )

    def summary(self) -> dict:
        other = self.other_cpu_s
        return {
            "wall_s": round(self.wall_s, 1),
            "other_processes_cpu_s": None if other is None else round(other, 1),
            "other_processes_pct_of_one_cpu": None if other is None else round(100 * other / self.wall_s, 1),
        }

    def line(self) -> str:
        s = self.summary()
        return (
            f"other processes used {s['other_processes_cpu_s']} CPU-s over {s['wall_s']} s "
            f"({s['other_processes_pct_of_one_cpu']}% of one CPU)"
        )


def hypervolume(points: Iterable[Sequence[float]], reference: Sequence[float] = (1.0, 1.0)) -> float:
    """Area dominated by ``points`` (both coordinates minimized) and bounded by ``reference``: a 2-D sweep."""
    rx, ry = reference
    inside = sorted((x, y) for x, y in points if x < rx and y < ry)
    area, floor = 0.0, ry
    for x, y in inside:
        if y < floor:
            area += (rx - x) * (floor - y)
            floor = y
    return area


def accuracy_flops_hv(trials: Sequence[dict]) -> float:
    """Hypervolume of (1 - accuracy, flops_ratio) over report items (COMPLETE, feasible), reference (1, 1)."""
    return hypervolume(
        [
            (1 - t["metrics"]["accuracy"], t["metrics"]["flops_ratio"])
            for t in trials
            if t["state"] == "COMPLETE" and t["feasible"] is not False and "flops_ratio" in t["metrics"]
        ]
    )


def hv_curve(trials: Sequence[dict], checkpoints: Sequence[int]) -> dict[int, float]:
    """Hypervolume of the trials numbered below k, for each k in ``checkpoints``."""
    return {k: round(accuracy_flops_hv([t for t in trials if t["number"] < k]), 5) for k in checkpoints}


def mean_std(values: Sequence[float]) -> dict:
    return {"mean": mean(values), "std": stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def with_changes(config, **sections):  # noqa: ANN001, ANN201 - an ExperimentConfig with some sections or keys replaced
    """``config`` with top-level keys replaced; a dict value for a section updates that section's keys."""
    from prunetuna.config import parse_config

    data = config.model_dump(mode="json")
    for key, value in sections.items():
        data[key] = (
            {**data[key], **value}
            if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "constraints"
            else value
        )
    return parse_config(data, "<benchmark>")


def run_study(config, workdir: Path):  # noqa: ANN001, ANN201 - (report items, the Optuna study)
    """Run ``config``'s study to its n_trials in ``workdir`` (in-process); its report items and the study."""
    from prunetuna.results import build_report
    from prunetuna.search import run_search
    from prunetuna.store import load_study, resolve_workspace

    workspace = resolve_workspace(config.name, workdir, None, None)
    run_search(config, workspace)
    study = load_study(workspace, config.name)
    return build_report(study).as_json()["trials"], study


def epochs_trained(study, epochs: int) -> int:  # noqa: ANN001
    """Fine-tune epochs the study spent: ``epochs`` per COMPLETE trial, the kept per-epoch record of a
    stopped one (0 for a candidate screened out before its fine-tune)."""
    total = 0
    for trial in study.trials:
        if trial.state.name == "COMPLETE":
            total += epochs
        elif trial.state.name == "PRUNED":
            total += len(trial.user_attrs.get("epoch_accuracy") or ())
    return total

"""Shared by the benchmarks: the machine, waiting for idle CPUs, and other processes' CPU use.

Linux only for the CPU accounting (/proc/stat); elsewhere the figures are None.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path


def busy_cpu_seconds() -> float | None:
    """CPU-seconds all processes have used since boot (Linux /proc/stat; None elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def own_cpu_seconds() -> float:
    """CPU-seconds of this process (all threads) and its waited-for children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    return {
        "cpus": os.cpu_count(),
        "processor": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def wait_idle(min_idle: float = 0.95, window: float = 2.0, timeout: float = 900.0) -> dict:
    """Block until the CPUs are >= ``min_idle`` idle over ``window`` seconds (or ``timeout`` passed)."""
    start = time.perf_counter()
    idle = None
    while busy_cpu_seconds() is not None:
        b0, t0 = busy_cpu_seconds(), time.perf_counter()
        time.sleep(window)
        idle = 1 - (busy_cpu_seconds() - b0) / ((time.perf_counter() - t0) * (os.cpu_count() or 1))
        if idle >= min_idle or time.perf_counter() - start > timeout:
            break
        print(f"  waiting for idle CPUs ({100 * idle:.0f}% idle)...", flush=True)
    return {
        "waited_s": round(time.perf_counter() - start, 1),
        "idle_fraction": None if idle is None else round(idle, 3),
    }


class Noise:
    """Context manager: CPU-seconds that other processes used while the block ran (~0 on a quiet machine)."""

    def __enter__(self) -> Noise:
        self.idle = wait_idle()
        self.busy0, self.own0, self.t0 = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self.t0
        busy1 = busy_cpu_seconds()
        self.other_cpu_s = None if busy1 is None else busy1 - self.busy0 - (own_cpu_seconds() - self.own0)

    def summary(self) -> dict:
        other = self.other_cpu_s
        return {
            "wait_for_idle": self.idle,
            "wall_s": round(self.wall_s, 1),
            "other_processes_cpu_s": None if other is None else round(other, 1),
            "other_processes_pct_of_one_cpu": None if other is None else round(100 * other / self.wall_s, 1),
        }

    def line(self) -> str:
        s = self.summary()
        return (
            f"other processes used {s['other_processes_cpu_s']} CPU-s over {s['wall_s']} s "
            f"({s['other_processes_pct_of_one_cpu']}% of one CPU); waited {s['wait_for_idle']['waited_s']} s for idle"
        )


def quietly(measure, *args, max_noise_pct: float = 10.0, tries: int = 3):
    """Run ``measure(attempt, *args)`` inside Noise (attempt = 1, 2, ...); rerun it (up to ``tries``) while other
    processes used > ``max_noise_pct`` of one CPU meanwhile. Returns (result, Noise) of the quietest run."""
    best = None
    for attempt in range(1, tries + 1):
        with Noise() as noise:
            result = measure(attempt, *args)
        if best is None or noise.other_cpu_s < best[1].other_cpu_s:
            best = (result, noise)
        if noise.other_cpu_s is None or noise.summary()["other_processes_pct_of_one_cpu"] <= max_noise_pct:
            break
        print(f"  noisy ({noise.line()}); measuring again", flush=True)
    return best

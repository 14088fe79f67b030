"""The dependency-graph guard: a build that runs past its time or memory limit is interrupted, with progress shown."""

from __future__ import annotations

import time

import pytest
from torch import nn

from prunetuna.errors import UserError
from prunetuna.spaces import GraphLimits, GraphTooExpensive, guarded


def _spin(seconds: float) -> int:
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:  # pure Python, like torch-pruning's graph walks
        n += 1
    return n


def test_a_build_past_its_time_limit_is_interrupted_with_progress(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    with pytest.raises(GraphTooExpensive, match=r"model: Linear: building the graph stopped after \d+ s \(limit 1 s\)"):
        guarded(
            nn.Linear(2, 2),
            "building the graph",
            lambda: _spin(30),
            GraphLimits(seconds=1, progress_after=0.4, tick=0.1),
        )
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert "prunetuna: building the graph of Linear: " in err and "(stops at 1 s or 4 GB)" in err


def test_a_build_past_its_memory_limit_is_interrupted() -> None:
    hoard: list[bytearray] = []

    def grow() -> None:
        for _ in range(400):  # up to 4 GB in 10 MB steps, touched so that it is resident
            hoard.append(bytearray(b"x" * 10_000_000))

    with pytest.raises(GraphTooExpensive, match=r"stopped after \d\.\d GB \(limit 0\.2 GB\)"):
        guarded(nn.Linear(2, 2), "building the graph", grow, GraphLimits(seconds=60, memory_gb=0.2, tick=0.05))
    assert len(hoard) < 100
    hoard.clear()


def test_any_failure_inside_the_build_is_one_line_of_bad_input() -> None:
    def fail() -> None:
        raise ZeroDivisionError("integer division or modulo by zero")

    with pytest.raises(
        UserError, match=r"model: Conv2d: torch-pruning cannot build its dependency graph \(ZeroDivisionError"
    ):
        guarded(nn.Conv2d(1, 1, 1), "building the graph", fail)


def test_the_guard_leaves_no_timer_behind() -> None:
    import signal

    assert guarded(nn.Linear(2, 2), "building the graph", lambda: 7, GraphLimits(tick=0.05)) == 7
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    _spin(0.2)  # no stray alarm fires

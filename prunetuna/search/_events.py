"""What a search tells whoever runs it: the CLI's progress display, the benchmarks, the tests.

``run_search`` calls the methods of one :class:`SearchEvents`; subclass it and override what you
need (every method does nothing by default).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

if TYPE_CHECKING:
    import optuna

    from prunetuna.store import StudyTracker

__all__ = ["SearchEvents", "SearchOutcome", "SearchStopped", "StepTimer", "StudyPresentation", "TrialEvent"]


@dataclass(frozen=True)
class TrialEvent:
    """One trial this process ran to its end (COMPLETE, PRUNED or FAIL)."""

    number: int
    state: str
    origin: str
    metrics: dict[str, float]
    seconds: float
    reason: str | None = None
    steps: dict[str, float] = field(default_factory=dict)  # seconds in each named step (StepTimer's labels)


class StepTimer:
    """Wall seconds a trial spent in its named steps: prune, measure, project, recalibrate, evaluate, fine_tune."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[label] += time.perf_counter() - start


@dataclass
class SearchOutcome:
    """The study's state as this process sees it; updated as trials end."""

    study_name: str
    finished: int
    target: int
    ran: int
    failed: int
    dense: dict[str, float]
    events: list[TrialEvent] = field(default_factory=list)


class SearchStopped(Exception):
    """The study kept failing, or the tracking store stayed away; the message says why and how to go on."""


class SearchEvents:
    """Callbacks of one search, in the order they come."""

    def started(self, outcome: SearchOutcome) -> None:
        """The study is open and the dense baseline known (also when the study is already complete)."""

    def waiting_for_creator(self) -> None:
        """Another worker created the study and is still preparing it; this one waits for its parent run."""

    def ready(self, outcome: SearchOutcome) -> Callable[[], object] | None:
        """The study, the dense baseline and the parent run exist, before the first trial. What this returns,
        if anything, is called after this process's last trial (``--workers`` joins its processes there)."""
        return None

    def trial_started(self, number: int) -> None:
        """A trial was sampled and is about to be pruned."""

    def trial_finished(self, event: TrialEvent, finished: int) -> None:
        """A trial ended; ``finished`` trials (all workers counted) are now COMPLETE or PRUNED."""

    def waiting(self, running: int) -> None:
        """The rest of the study is running elsewhere (other workers, or a killed process being timed out)."""


class StudyPresentation(Protocol):
    """What the command that runs a search draws: a trial's sparsity profile, and the study's plots and
    summary at the end (in ``prunetuna.summary``; the search package never imports the report or plots)."""

    def trial_profile(self, number: int, vector: dict[str, float], layers: list[str]) -> object:
        """The figure logged with the trial's run (called in the tracker's writer thread)."""

    def publish(self, study: optuna.Study, layers: list[str], workdir: Path, tracker: StudyTracker) -> None:
        """The study's plots under ``<workdir>/plots``, logged to the parent run, then the MLflow summary."""

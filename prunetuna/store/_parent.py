"""The study's one MLflow parent run, whatever the number of workers: the process that created the study
prepares it (its warm start) and creates the run; the others wait for the id it publishes in the study, as long
as the creator beats. A creator that falls silent is gone: the waiters then start the parent themselves, and the
election of store/_parent_run.py keeps one run for all of them."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator

import optuna

from prunetuna.faults import fault
from prunetuna.store._records import StudyRecord, set_study_fields
from prunetuna.store._tracking import StudyTracker

__all__ = ["PARENT_BEAT_S", "PARENT_SILENCE_S", "PARENT_STALE_S", "CreatorWatch", "coordinate_parent", "creator_beat"]

PARENT_BEAT_S = 3.0  # how often the study's creator writes its beat while it prepares the study
PARENT_SILENCE_S = 30.0  # how long a waiting worker hears no beat before it takes the creator for gone
PARENT_STALE_S = 600.0  # a last beat this old by the waiter's clock: gone at once (an abandoned study, resumed)
_POLL_S = 0.5


class CreatorWatch:
    """Whether the creator is gone, from the beats a waiter reads: no new beat for ``silence_s`` seconds of the
    waiter's own clock. Only the beat's value changing counts, so the machines' clocks need not agree; a creator
    that never beat (killed before its first) is gone ``silence_s`` after the first look. A last beat older than
    ``stale_s`` by the waiter's wall clock (``age``, a margin far above any clock skew) is gone at once: a study
    abandoned in its preparation, resumed later. Pure: no I/O, no clock."""

    def __init__(self, silence_s: float = PARENT_SILENCE_S, stale_s: float = PARENT_STALE_S) -> None:
        self.silence_s, self.stale_s = silence_s, stale_s
        self._beat: object = None
        self._heard_at: float | None = None

    def gone(self, beat: object, now: float, age: float | None = None) -> bool:
        if age is not None and age > self.stale_s:
            return True
        if self._heard_at is None or beat != self._beat:
            self._beat, self._heard_at = beat, now
        return now - self._heard_at > self.silence_s


@contextlib.contextmanager
def creator_beat(study: optuna.Study, created: bool) -> Iterator[None]:
    """While the study's creator prepares it (``created``): its beat written every ``PARENT_BEAT_S`` seconds, in a
    thread of its own (a failed write is skipped: the next one may land; a long silence only makes the waiters
    start the parent themselves)."""
    if not created:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):
                set_study_fields(study, creator_beat=time.time())
            if stop.wait(PARENT_BEAT_S):
                return

    threading.Thread(target=beat, name="prunetuna-creator-beat", daemon=True).start()
    try:
        yield
    finally:
        stop.set()


def _published_parent(
    study: optuna.Study, on_wait: Callable[[], None], watch: CreatorWatch | None = None
) -> str | None:
    """The parent run id the study's creator published; waits while the creator still beats (it is preparing the
    study: its warm start, its parent run), so that workers starting together share its run. None: the creator
    is gone before publishing one."""
    watch = watch or CreatorWatch()
    told = False
    while True:
        record = StudyRecord.of(study.user_attrs)
        if record.mlflow_parent_run_id is not None:
            return record.mlflow_parent_run_id
        last = record.creator_beat if record.creator_beat is not None else record.created_at
        if watch.gone(record.creator_beat, time.monotonic(), time.time() - last if last is not None else None):
            return None  # StudyTracker.start_parent settles it (the election of store/_parent_run.py)
        if not told:
            on_wait()
            told = True
        time.sleep(_POLL_S)


def coordinate_parent(
    study: optuna.Study, created: bool, params: dict[str, object], tracker: StudyTracker, on_wait: Callable[[], None]
) -> str:
    """The parent run id, shared by every worker, with the study's settings ``params``: the creator starts it;
    the others take the one it published, or start it themselves when the creator fell silent (the election
    keeps one run); the study keeps the id of the run elected."""
    hint = StudyRecord.of(study.user_attrs).mlflow_parent_run_id
    if created:
        fault("parent")
    else:
        hint = _published_parent(study, on_wait)
    parent = tracker.start_parent(hint, params)
    if hint != parent:
        set_study_fields(study, mlflow_parent_run_id=parent)
    return parent

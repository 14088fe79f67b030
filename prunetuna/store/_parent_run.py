"""The study's one MLflow parent run, elected: found, created, and followed by every worker.

A worker that finds no parent run creates one; workers that do so together (the study's creator was killed before
it published its run, or they gave up waiting for it together) each hold a run of their own for a moment. The
winner is decided by :func:`elect`, a pure function of the runs tagged ``prunetuna.role: study``: the earliest
start time, the run id breaking a tie. The others are *superseded*: relabelled ``study-superseded`` (with
``prunetuna.superseded_by``) and ended KILLED, never deleted, because another worker may hold one (a write to a
deleted run fails; to a superseded one it lands). The winner is stable: it is the earliest of every run ever
created as a candidate, and a run is superseded only when a candidate earlier than it was seen, so the winner
is never superseded and every worker that looks again finds it. Every worker looks again before each trial's
run (:meth:`ParentRuns.follow_parent`) and moves to the winner; reconciliation re-parents the trial runs made
under a superseded run (store/_reconcile.py).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from prunetuna.store._outage import Outage, TrackingAway
from prunetuna.store._records import Role, RunStatus, Tag

__all__ = ["MAX_PARAM", "Candidate", "Election", "ParentRuns", "elect", "mlflow_params"]

MAX_PARAM = 6000
_JOIN_TRIES = 5  # each try finds a run that lost since: a new candidate earlier than the last winner, each time


def mlflow_params(params: Mapping[str, object]) -> list[Param]:
    return [Param(str(k), str(v)[:MAX_PARAM]) for k, v in params.items()]


@dataclass(frozen=True, order=True)
class Candidate:
    """A run tagged as the study's parent, as the election ranks it: start time first, then run id."""

    start_time: int
    run_id: str


@dataclass(frozen=True)
class Election:
    """The parent run (None: there is none yet) and the candidates it supersedes."""

    winner: str | None
    losers: tuple[str, ...] = ()


def elect(candidates: Iterable[Candidate]) -> Election:
    """The earliest candidate wins (start time, then run id); every other one is superseded. Pure: every worker
    that sees the same runs decides the same, and the earliest of a superset is never one of a subset's losers."""
    ranked = sorted(set(candidates))
    if not ranked:
        return Election(None)
    return Election(ranked[0].run_id, tuple(c.run_id for c in ranked[1:]))


class ParentRuns:
    """The parent-run half of :class:`~prunetuna.store.StudyTracker` (which sets these attributes)."""

    client: MlflowClient
    outage: Outage
    study_name: str
    experiment_id: str | None
    parent_run_id: str | None
    _parent_params: Mapping[str, object]
    _parent_metrics: dict[str, float]

    def _candidates(self) -> list[Candidate]:
        runs = self.outage.call(
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`{Tag.ROLE}` = '{Role.STUDY.value}'",
            order_by=["attributes.start_time ASC"],
            max_results=1000,
        )
        return [Candidate(int(r.info.start_time or 0), r.info.run_id) for r in runs]

    def _is_parent(self, run_id: str) -> bool:
        """``run_id`` is a live run of this experiment that nothing superseded (a parent the study kept)."""
        try:
            run = self.outage.call(self.client.get_run, run_id)
        except TrackingAway:
            raise
        except Exception:  # noqa: BLE001 - a run from another store
            return False
        role = run.data.tags.get(Tag.ROLE)
        return (
            run.info.experiment_id == self.experiment_id
            and run.info.lifecycle_stage == "active"
            and role != Role.SUPERSEDED.value
        )

    def resolve_parent(self, hint: str | None = None) -> str | None:
        """The elected parent run, superseding the other candidates it sees; with none, ``hint`` (the id the study
        keeps) when it is a live run of this experiment. Changes nothing of this tracker."""
        if self.experiment_id is None:
            return None
        election = elect(self._candidates())
        for loser in election.losers:
            self.supersede(loser, str(election.winner))
        if election.winner is not None:
            return election.winner
        return hint if hint and self._is_parent(hint) else None

    def supersede(self, run_id: str, winner: str) -> None:
        """Relabel a losing candidate and end it KILLED; never deleted (a worker may still hold it)."""
        tags = [RunTag(Tag.ROLE, Role.SUPERSEDED.value), RunTag(Tag.SUPERSEDED_BY, winner)]
        self.outage.call(self.client.log_batch, run_id, tags=tags)
        self.outage.call(self.client.set_terminated, run_id, status=RunStatus.KILLED.value)

    def find_parent(self, hint: str | None = None) -> str | None:
        """The study's parent run (:meth:`resolve_parent`), kept as this tracker's."""
        self.parent_run_id = self.resolve_parent(hint)
        return self.parent_run_id

    def start_parent(self, hint: str | None, params: Mapping[str, object]) -> str:
        """Join the elected parent run (marked RUNNING again), or create a candidate with the study's settings as
        params and join the winner; retried through an outage like the trials' writes (a server restarting while
        a worker starts: the chaos soak)."""
        self._parent_params = dict(params)
        if self.find_parent(hint) is None:
            assert self.experiment_id is not None
            run = self.outage.call(
                self.client.create_run, self.experiment_id, run_name=self.study_name, tags={Tag.ROLE: Role.STUDY.value}
            )
            # Workers started together may each create one: the election keeps one, and supersedes the others.
            self.parent_run_id = self.resolve_parent() or run.info.run_id
        self.parent_run_id = self._join(self.parent_run_id)  # type: ignore[arg-type]
        return self.parent_run_id

    def _join(self, run_id: str) -> str:
        """Mark the parent RUNNING and log the study's settings it lacks (a parent created by `prunetuna
        sensitivity`, or by a worker killed before it logged them; params are write-once). A run superseded before
        its RUNNING mark landed is ended again and the winner joined instead. Returns the run joined."""
        for _ in range(_JOIN_TRIES):
            self.outage.call(self.client.update_run, run_id, status=RunStatus.RUNNING.value)
            run = self.outage.call(self.client.get_run, run_id)
            if run.data.tags.get(Tag.ROLE) != Role.SUPERSEDED.value:
                break
            self.outage.call(self.client.set_terminated, run_id, status=RunStatus.KILLED.value)
            run_id = self.resolve_parent() or run.data.tags[Tag.SUPERSEDED_BY]
        if run.info.run_id != run_id:  # the tries ran out on a run that lost: join the last winner as it is
            run = self.outage.call(self.client.get_run, run_id)
        missing = {k: v for k, v in self._parent_params.items() if k not in run.data.params}
        if missing:
            try:
                self.outage.call(self.client.log_batch, run_id, params=mlflow_params(missing))
            except TrackingAway:
                raise
            except Exception:  # two workers joining at once log the same keys: the first one's stay
                logged = self.outage.call(self.client.get_run, run_id).data.params
                if any(k not in logged for k in missing):
                    raise
        return run_id

    def follow_parent(self) -> str | None:
        """Look again (before each trial's run): move to the elected parent when it is not the one held, ending the
        one left (its RUNNING mark may have come after it was superseded)."""
        if self.parent_run_id is None:
            return None
        elected = self.resolve_parent(self.parent_run_id)
        if elected is None or elected == self.parent_run_id:
            return self.parent_run_id
        left, self.parent_run_id = self.parent_run_id, elected
        with contextlib.suppress(Exception):  # best effort: superseded, it was ended once already
            self.outage.call(self.client.set_terminated, left, status=RunStatus.KILLED.value)
        self.parent_run_id = self._join(elected)
        if self._parent_metrics:
            self.log_parent_metrics(self._parent_metrics)
        return self.parent_run_id

    def log_parent_metrics(self, metrics: Mapping[str, float]) -> None:
        self._parent_metrics = dict(metrics)
        if self.parent_run_id:
            stamp = int(time.time() * 1000)
            metrics_ = [Metric(k, float(v), stamp, 0) for k, v in metrics.items()]
            self.outage.call(self.client.log_batch, self.parent_run_id, metrics=metrics_)

"""``search.keep_weights: front``: the fine-tuned weights of COMPLETE trials that are no longer on the study's front
are removed, from the MLflow artifact store and from the local durable record.

A trial's weights are written and uploaded before it is acknowledged whatever the setting (it can be on the front
when it finishes). The front is Optuna's ``best_trials`` (the feasible trials' Pareto front; with one objective,
the trials at the best value), and its complement only grows: a trial another one dominates never returns to it,
so a removal is final. Deciding is two pure functions (:func:`off_front`, :func:`weights_to_drop`); removing is
:class:`WeightsKeeper`, in the tracker's background writer after this process's earlier writes (a trial's own
upload never lands after its removal). A run is tagged ``prunetuna.weights: dropping`` before its files go and
``dropped`` once they are gone; reconcile leaves either without ``model/`` and export refuses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Mapping, Sequence

from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from optuna.trial import FrozenTrial, TrialState

from prunetuna.store._durable import TrialStore
from prunetuna.store._records import RunStatus, Tag, TrialRecord, WeightsMark

if TYPE_CHECKING:
    import optuna

    from prunetuna.store._tracking import StudyTracker

__all__ = ["Drop", "WeightsKeeper", "off_front", "weights_removed", "weights_to_drop"]

_log = logging.getLogger("prunetuna")
MODEL = "model"
_CHUNK = 50  # run ids per search request


@dataclass(frozen=True)
class Drop:
    """A trial whose weights go: ``remote`` while its run is not yet marked DROPPED (MLflow may hold them)."""

    number: int
    run_id: str
    remote: bool


def off_front(trials: Sequence[FrozenTrial], front: Sequence[FrozenTrial]) -> dict[int, str]:
    """The COMPLETE trials with a run that ``front`` does not hold (number -> run id); none while the front is
    empty (no feasible trial yet: which infeasible ones stay cannot be told yet)."""
    if not front:
        return {}
    kept = {t.number for t in front}
    return {
        t.number: run_id
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.number not in kept
        and (run_id := TrialRecord.of(t).mlflow_run_id) is not None
    }


def weights_to_drop(candidates: Mapping[int, str], runs: Mapping[str, tuple[str, str | None]]) -> list[Drop]:
    """Of the trials off the front (``candidates``), those whose weights go now, given their runs' status and
    ``prunetuna.weights`` tag (``runs``: run id -> (status, mark)): a run marked DROPPED only locally; otherwise
    once it is ended FINISHED (every write of its trial landed, the upload too); a run not found, not yet."""
    drops = []
    for number, run_id in sorted(candidates.items()):
        if run_id not in runs:
            continue
        status, mark = runs[run_id]
        if mark == WeightsMark.DROPPED.value:
            drops.append(Drop(number, run_id, remote=False))
        elif status == RunStatus.FINISHED.value or mark == WeightsMark.DROPPING.value:
            drops.append(Drop(number, run_id, remote=True))
    return drops


class WeightsKeeper:
    """Removes, for this process, the weights of the trials that fell off the front: :meth:`prune` after each
    tell and at the study's end."""

    def __init__(self, tracker: StudyTracker, store: TrialStore) -> None:
        self.tracker, self.store = tracker, store
        self.settled: set[int] = set()  # trials whose weights this process saw gone (MLflow and this work dir)

    def prune(self, study: optuna.Study) -> None:
        """Decide from the study as it is now, remove in the background writer (:meth:`StudyTracker.flush` waits)."""
        try:
            trials = study.get_trials(deepcopy=False)
            candidates = {n: r for n, r in off_front(trials, study.best_trials).items() if n not in self.settled}
        except Exception as exc:  # noqa: BLE001 - never stops a search: the next tell or the study's end tries again
            _log.warning("prunetuna: could not read the study's front (%s); its weights are kept for now", exc)
            return
        if candidates:
            self.tracker.background(self._remove, candidates)

    def _remove(self, candidates: dict[int, str]) -> None:
        runs = {run.info.run_id: run for run in _runs(self.tracker, list(candidates.values()))}
        states = {i: (run.info.status, run.data.tags.get(Tag.WEIGHTS)) for i, run in runs.items()}
        client = self.tracker.client
        for drop in weights_to_drop(candidates, states):
            if drop.remote:
                client.set_tag(drop.run_id, Tag.WEIGHTS, WeightsMark.DROPPING.value)
                if client.list_artifacts(drop.run_id, MODEL):
                    uri = runs[drop.run_id].info.artifact_uri
                    repository = get_artifact_repository(uri, tracking_uri=self.tracker.workspace.tracking_uri)
                    repository.delete_artifacts(MODEL)
                client.set_tag(drop.run_id, Tag.WEIGHTS, WeightsMark.DROPPED.value)
            self.store.drop_model(drop.number)
            self.settled.add(drop.number)


def _runs(tracker: StudyTracker, run_ids: Collection[str]) -> list:  # noqa: ANN401 - mlflow Runs
    ids = sorted(run_ids)
    found = []
    for start in range(0, len(ids), _CHUNK):
        quoted = ", ".join(f"'{i}'" for i in ids[start : start + _CHUNK])
        found += tracker.client.search_runs(
            [tracker.experiment_id], filter_string=f"attributes.run_id IN ({quoted})", max_results=_CHUNK
        )
    return found


def weights_removed(tracker: StudyTracker) -> set[str]:
    """The runs of the study's trials whose weights ``search.keep_weights: front`` removed (or is removing)."""
    if tracker.experiment_id is None:
        return set()
    found: set[str] = set()
    token = None
    while True:
        page = tracker.outage.call(
            tracker.client.search_runs,
            [tracker.experiment_id],
            filter_string=f"tags.`{Tag.WEIGHTS}` LIKE 'drop%'",
            max_results=1000,
            page_token=token,
        )
        found |= {run.info.run_id for run in page}
        token = page.token
        if not token:
            return found

"""``run_search``: prepare, open the study, coordinate the parent run, run trials until the study holds
``n_trials`` finished ones (all workers counted), finish. Each step is a named function below."""

from __future__ import annotations

import contextlib
import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from prunetuna.config import ExperimentConfig
from prunetuna.errors import UserError
from prunetuna.faults import fault
from prunetuna.search._events import SearchEvents, SearchOutcome, SearchStopped, StudyPresentation, TrialEvent
from prunetuna.search._plan import TrialPlan, build_plan, check_inputs, trial_settings
from prunetuna.search._runner import TrialRunner
from prunetuna.search._samplers import make_sampler
from prunetuna.search._study import (
    FINISHED_STATES,
    NeverStarted,
    check_existing,
    count_finished,
    enqueue_again,
    open_study,
    retry_later,
)
from prunetuna.search._warm_start import enqueue_baselines
from prunetuna.store import (
    RunStatus,
    StudyRecord,
    StudyTracker,
    TrackingAway,
    TrialEnd,
    TrialStore,
    TrialWriter,
    WeightsKeeper,
    Workspace,
    close_finished_parent,
    coordinate_parent,
    creator_beat,
    mask_url,
    open_storage,
    reconcile,
    write_study,
)

__all__ = ["run_search"]


def run_search(
    config: ExperimentConfig,
    workspace: Workspace,
    *,
    n_trials: int | None = None,
    events: SearchEvents | None = None,
    presentation: StudyPresentation | None = None,
) -> SearchOutcome:
    """Create or resume the study and run trials until it holds ``n_trials`` finished ones (all workers counted).

    ``events`` hears how it goes (:class:`SearchEvents`); ``presentation`` draws the trials' profiles and the
    study's plots and summary (None: nothing drawn, as for workers started by ``--workers``).
    """
    events = events or SearchEvents()
    target = n_trials if n_trials is not None else config.search.n_trials
    if target < 1:
        raise UserError(f"--n-trials: must be at least 1, got {target}")
    # Everything that can be wrong with the input is checked before any store is written.
    inputs = check_inputs(config)
    storage = open_storage(workspace, create=True, heartbeat=config.search.heartbeat)
    stored = check_existing(storage, config, inputs.scoring.directions)
    tracker = StudyTracker(workspace, config.name)
    tracker.connect(create=True, used_before=StudyRecord.of(stored).mlflow_parent_run_id is not None)
    plan = build_plan(inputs, workspace.workdir)
    study, created = open_study(storage, config, plan.scoring.directions)
    with creator_beat(study, created):  # the other workers wait while the creator beats (store/_parent.py)
        if plan.context.cache is not None:
            plan.context.cache.attach(study)  # latency measurements by architecture, shared through the study
        store = TrialStore(workspace.workdir)
        if not created:
            optuna.storages.fail_stale_trials(study)  # trials of killed processes: failed and enqueued again
            reconcile(study, tracker, store)  # runs those and earlier kills left incomplete: repaired from the work dir
        write_study(study, _study_record(plan), stored)
        outcome = SearchOutcome(config.name, count_finished(study), target, 0, 0, plan.dense)
        events.started(outcome)
        session = _Session(study, plan, workspace, tracker, store, outcome, events, presentation)
        if outcome.finished >= target:
            close_finished_parent(study, tracker, session.publish)
            session.keep_front()  # a complete study resumed with search.keep_weights: front
            return outcome
        # Seeded per trial number: a resumed session continues the search instead of replaying it, and
        # workers sharing the study draw different points.
        study.sampler = make_sampler(config.search.sampler, config.seed, target, session.runner.screen)
        if created:
            enqueue_baselines(study, plan)  # before the parent run: workers waiting for it find the baselines queued
        coordinate_parent(study, created, parent_params(plan, workspace), tracker, events.waiting_for_creator)
        if not created:
            enqueue_baselines(study, plan)  # a resumed study whose config now asks for them
    session.run()
    return outcome


def parent_params(plan: TrialPlan, workspace: Workspace) -> dict[str, object]:
    """The study's settings, logged once as the parent run's params."""
    config = plan.config
    return {
        "seed": config.seed,
        "objectives": ",".join(config.objectives),
        "constraints": str(dict(config.constraints)),
        "search.sampler": config.search.sampler,
        "search.screening.candidates": config.search.screening.candidates,
        "storage": mask_url(workspace.storage_url),
        "mode": config.mode,
        "tolerance": config.tolerance.accuracy_drop if config.tolerance else "",
        "scalarize": str(config.scalarize or ""),
        **{f"latency.{k}": v for k, v in plan.context.latency.__dict__.items()},
        **({f"device.{k}": v for k, v in plan.context.cache.device.items()} if plan.context.cache is not None else {}),
        **{f"dense.{k}": v for k, v in plan.dense.items()},
        **trial_settings(config),
    }


def _study_record(plan: TrialPlan) -> StudyRecord:
    config = plan.config
    return StudyRecord(
        objectives=tuple(config.objectives),
        mode=config.mode,
        dense=plan.dense,
        latency_settings=plan.context.latency.__dict__,
        latency_device=plan.context.cache.device if plan.context.cache is not None else None,
        dimensions=tuple(plan.space.names),
        dimension_layers={d.name: len(d.layers) for d in plan.space.dimensions},
        method=config.pruning.method,
        scale=config.pruning.scale,
        constraints=dict(config.constraints),
        tolerance=config.tolerance.accuracy_drop if config.tolerance else None,
        metric=config.metric.model_dump() if config.metric is not None else {"name": "accuracy", "mode": "max"},
    )


class _Session:
    """This process's part of the study: its trials, what stopped it, and how it ends the parent run."""

    def __init__(
        self,
        study: optuna.Study,
        plan: TrialPlan,
        workspace: Workspace,
        tracker: StudyTracker,
        store: TrialStore,
        outcome: SearchOutcome,
        events: SearchEvents,
        presentation: StudyPresentation | None,
    ) -> None:
        self.study, self.plan, self.workspace, self.tracker, self.store = study, plan, workspace, tracker, store
        self.outcome, self.events, self.presentation = outcome, events, presentation
        profile = presentation.trial_profile if presentation is not None else None
        self.runner = TrialRunner(plan, TrialWriter(tracker, store), outcome.target, profile, events.trial_started)
        self.stop_reason: str | None = None
        self.away: str | None = None
        self.never_started = NeverStarted(grace_s=3 * plan.config.search.heartbeat)
        front = plan.config.search.keep_weights == "front"
        self.keeper = WeightsKeeper(tracker, store) if front else None  # removes weights that fell off the front

    def publish(self) -> None:
        if self.presentation is not None:
            self.tracker.follow_parent()  # the plots go to the elected parent run, if another won meanwhile
            self.presentation.publish(self.study, list(self.plan.space.names), self.workspace.workdir, self.tracker)

    def run(self) -> None:
        """Run until done, then finish: the plots, a last reconciliation, the parent run's end."""
        status = RunStatus.FAILED
        join = None
        try:
            self.tracker.log_parent_metrics({f"dense_{k}": v for k, v in self.plan.dense.items()})
            self.tracker.flush()
            join = self.events.ready(self.outcome)
            self._until_done()
            status = RunStatus.FINISHED
        except KeyboardInterrupt:
            retry_later(self.study, self.runner.current)
            raise
        finally:
            try:
                if join is not None and (status is RunStatus.FINISHED or self.stop_reason or self.away):
                    join()  # the workers started at ready(): the plots should show their trials too
                if self.outcome.ran:
                    with contextlib.suppress(TrackingAway):  # reported once; drawn again by the next start
                        self.publish()
                with contextlib.suppress(Exception):  # best effort: never hides the error that ended the search
                    self.tracker.flush()  # this process's own run ends are written before runs are judged interrupted
                    reconcile(
                        self.study, self.tracker, self.store
                    )  # writes that failed, trials failed as stale meanwhile
                    self.keep_front()
            finally:
                self.tracker.end_parent(status.value)
        self._raise_if_stopped()

    def keep_front(self) -> None:
        """With ``search.keep_weights: front``: the weights of every trial off the front removed, now."""
        if self.keeper is not None:
            self.keeper.prune(self.study)
            self.tracker.flush()

    def _until_done(self) -> None:
        study, outcome = self.study, self.outcome
        waited = False
        while self.stop_reason is None and self.away is None:
            outcome.finished = count_finished(study)
            if outcome.finished >= outcome.target:
                return
            running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
            if outcome.finished + running >= outcome.target:
                # The rest is running elsewhere: wait for it, and fail (and enqueue again) the trials of
                # processes that stopped beating, then run those here.
                if not waited:
                    self.events.waiting(running)
                waited = True
                self._check_elsewhere()
                continue
            study.optimize(
                self.runner,
                n_trials=outcome.target - outcome.finished,
                callbacks=[optuna.study.MaxTrialsCallback(outcome.target, states=FINISHED_STATES), self._told],
                catch=(Exception,),
                gc_after_trial=False,
            )

    def _check_elsewhere(self) -> None:
        time.sleep(min(2.0, self.plan.config.search.heartbeat))
        optuna.storages.fail_stale_trials(self.study)
        self.never_started.fail(self.study)  # and those killed inside Optuna's ask, before their first beat
        self.tracker.flush()
        reconcile(self.study, self.tracker, self.store)

    def _told(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's callback after each trial of this process: its event, from the outcome the runner decided."""
        fault("told", trial.number)
        self.runner.writer.told(trial.number)  # a shared study's run is ended once its trial is acknowledged
        if self.keeper is not None:
            self.keeper.prune(study)  # after the tell and the run's end: the trial just told may have pushed some off
        timer = self.runner.timers.pop(trial.number, None)
        result = self.runner.outcomes.pop(trial.number, None)
        if result is None:  # surplus: marked FAIL without work
            return
        if result.tracking_away:  # the tracking store stayed away: stop, and run this trial next time
            enqueue_again(study, trial)
            self.away = result.fail_reason or "tracking store away"
            study.stop()
            return
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else 0.0
        )
        event = TrialEvent(
            trial.number,
            result.state.value,
            result.origin,
            result.metrics if result.state.finished else {},
            seconds,
            result.reason,
            dict(timer.seconds) if timer is not None else {},
        )
        outcome = self.outcome
        outcome.events.append(event)
        outcome.ran += 1
        if result.state is TrialEnd.FAIL:
            outcome.failed += 1
            if outcome.failed >= self.plan.config.search.max_failures:
                self.stop_reason = event.reason or "unknown error"
                study.stop()
        outcome.finished = count_finished(study)
        self.events.trial_finished(event, outcome.finished)

    def _raise_if_stopped(self) -> None:
        name = self.plan.config.name
        if self.away is not None:
            raise SearchStopped(
                f"study {name!r} stopped: the tracking store is away (above); rerun the same command once it is back"
            )
        if self.stop_reason is not None:
            raise SearchStopped(
                f"study {name!r} stopped after {self.outcome.failed} failed trials in this run "
                f"(search.max_failures = {self.plan.config.search.max_failures}); last: {self.stop_reason}"
            )

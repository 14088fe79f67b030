"""One trial, as Optuna's objective: draw a candidate, open its MLflow run, recalibrate, screen, fine-tune with
the early-stopping rule and score, each step's result decided into a :class:`~prunetuna.store.TrialOutcome`
(search/_outcome.py) that the one writer records (docs/design.md, "Trials")."""

from __future__ import annotations

import gc
import traceback
from typing import Callable

import optuna
import torch
from optuna.trial import Trial, TrialState

from prunetuna.faults import fault, out_of_memory
from prunetuna.objectives import OBJECTIVES, within_budgets
from prunetuna.search._candidate import Candidate, CandidateScreen, draw_candidate
from prunetuna.search._early_stopping import (
    EARLY_STOPPING,
    Promotion,
    RungPoint,
    StopContext,
    TrialPruningCallback,
    rung_points,
)
from prunetuna.search._events import StepTimer
from prunetuna.search._outcome import completed, drawn, failed, over_budget, stopped
from prunetuna.search._plan import TrialPlan, trial_settings
from prunetuna.search._screening import Screening, earlier_points, screen_point
from prunetuna.search._study import FINISHED_STATES
from prunetuna.sparsity import SparsityVector, as_params, from_params
from prunetuna.store import TrackingAway, TrialEnd, TrialModel, TrialOutcome, TrialRecord, TrialWriter, study_manifest
from prunetuna.training import FinetuneResult, finetune_options, recalibrate_batchnorm

__all__ = ["SURPLUS", "ProfileDrawer", "SurplusTrial", "TrialRunner"]

SURPLUS = "surplus: the study already had n_trials trials finished or running when this one started (not run)"

ProfileDrawer = Callable[[int, SparsityVector, list[str]], object]
"""``draw(number, vector, layers)``: the trial's sparsity-profile figure (drawn in the tracker's writer thread)."""


def release_memory() -> None:
    """After an out-of-memory error: collect what the failed trial held, and give the GPU's cached blocks back."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class SurplusTrial(Exception):
    """A worker's trial beyond ``n_trials``: marked FAIL without work, not counted as a failure."""


class TrialRunner:
    """Optuna's objective for the study: ``runner(trial)`` returns the values to tell Optuna.

    ``target`` is the study's ``n_trials``; ``current`` the trial running now (Ctrl-C enqueues it again);
    ``outcomes`` the outcome of each trial of this process until its end is told (``TrialEvent``).
    """

    def __init__(
        self,
        plan: TrialPlan,
        writer: TrialWriter,
        target: int,
        profile: ProfileDrawer | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> None:
        self.plan = plan
        self.writer = writer
        self.target = target
        self.profile = profile
        self.on_start = on_start
        self.settings = trial_settings(plan.config)
        self.manifest = study_manifest(plan.config)
        self.current: Trial | None = None
        self.timers: dict[int, StepTimer] = {}  # by trial number, until its end is told (TrialEvent.steps)
        self.outcomes: dict[int, TrialOutcome] = {}
        count = plan.config.search.screening.candidates
        self.screen = CandidateScreen(plan, count) if count > 1 else None  # the sampler's chooser (search/_run.py)

    def __call__(self, trial: Trial) -> list[float]:
        """Run the trial and record its outcome once; whatever fails in it (pruning, measuring, fine-tuning)
        is its reason, in the trial's record and its MLflow run, with the traceback as an artifact."""
        self._check_not_surplus(trial)
        self.current = trial
        if self.on_start is not None:
            self.on_start(trial.number)
        origin = TrialRecord.of(trial).origin  # enqueued baselines carry theirs
        timer = self.timers[trial.number] = StepTimer()
        started: list[TrialOutcome] = []  # the drawn candidate, once there is one
        error: Exception | None = None
        try:
            outcome = self._run(trial, origin, timer, started)
        except Exception as exc:
            error = exc
            memory = isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            params = started[0].params if started else {**as_params(from_params(trial.params)), **self.settings}
            outcome = failed(
                trial.number,
                origin,
                params,
                exc,
                traceback.format_exc(),
                started[0] if started else None,
                tracking_away=isinstance(exc, TrackingAway),
            )
            if memory:  # the trial fails with its reason; what it held goes before the next one
                error = exc.with_traceback(None)  # its frames hold the candidate model and its batches
                release_memory()
        self.outcomes[trial.number] = outcome
        try:
            self.writer.finish(trial, outcome)
        except TrackingAway as exc:  # a shared study's trial could not be written to the tracking store: run it again
            error = exc
            outcome = failed(
                trial.number, origin, outcome.params, exc, traceback.format_exc(), None, tracking_away=True
            )
            self.outcomes[trial.number] = outcome
            self.writer.finish(trial, outcome)
        if error is not None:
            raise error  # FAIL; a TrackingAway stops run_search, which enqueues the trial again
        if outcome.state is TrialEnd.PRUNED:
            raise optuna.TrialPruned(outcome.stop_reason)
        return list(outcome.values)

    def _check_not_surplus(self, trial: Trial) -> None:
        """Workers that start trials together could overshoot ``n_trials``; trial numbers are handed out
        atomically, so a trial with ``n_trials`` live or finished trials before it is surplus and stops here."""
        if trial.number < self.target:
            return  # fewer than n_trials trials can be ahead of it
        ahead = trial.study.get_trials(deepcopy=False, states=(*FINISHED_STATES, TrialState.RUNNING))
        if sum(t.number < trial.number for t in ahead) >= self.target:
            self.writer.surplus(trial, SURPLUS)
            trial.study.stop()
            raise SurplusTrial(SURPLUS)

    def _run(self, trial: Trial, origin: str, timer: StepTimer, started: list[TrialOutcome]) -> TrialOutcome:
        plan = self.plan
        candidate = draw_candidate(plan, trial, timer, self.screen)
        base = drawn(
            plan,
            trial.number,
            origin,
            candidate.vector,
            candidate.costs,
            candidate.budget,
            {**as_params(candidate.vector), **self.settings},
            candidate.screened,
        )
        started.append(base)
        self.writer.start(trial, trial.number, origin, candidate.vector, base.params)
        fault("pruned", trial.number)
        stop = over_budget(plan, base)
        if stop is not None:
            return stop
        costs = dict(candidate.costs)
        if plan.batches:
            if candidate.accuracy_pruned is None:  # else its screening recalibrated and scored it
                with timer.step("recalibrate"):
                    recalibrate_batchnorm(candidate.model, [x for x, _ in plan.batches])
                with timer.step("evaluate"):
                    candidate.accuracy_pruned = plan.workload.task.evaluate(candidate.model, plan.workload.datamodule)
            costs["accuracy_pruned"] = candidate.accuracy_pruned
            stop = self._screen(trial, origin, base, costs)
            if stop is not None:
                return stop
        stopper = self._early_stopping(trial, costs)
        epochs: list[float] = []
        with timer.step("fine_tune"):
            out_of_memory(trial.number)  # PRUNETUNA_FAULT=oom / cuda_oom: the tests' out-of-memory error
            result = plan.workload.task.fine_tune(  # the built-in classifier or the user's LightningModule
                candidate.model,
                plan.workload.datamodule,
                epochs=plan.config.finetune.epochs,
                lr=plan.config.finetune.lr,
                max_batches=plan.finetune_batches,  # finetune.max_batches or .max_images
                seed=plan.config.seed + trial.number,
                on_epoch=lambda epoch, score: self._epoch(trial.number, epochs, epoch, score, stopper),
                callbacks=[stopper] if stopper else (),
                **finetune_options(plan.config, teacher=plan.workload.model),  # finetune.trainer, .callbacks, .distill
            )
        metrics = {"accuracy": result.accuracy, **plan.workload.task.named(result.accuracy), **costs}
        if stopper is not None and stopper.reason:
            return stopped(base, stopper.reason, metrics=metrics, epochs=tuple(result.history), keep_epochs=True)
        if plan.config.search.promote.top:
            longer = self._promote(trial, origin, candidate, result.accuracy, costs, epochs, timer)
            if longer is not None:
                result = FinetuneResult(longer.accuracy, [*result.history, *longer.history], result.seconds)
                named = plan.workload.task.named(result.accuracy)
                metrics = {**metrics, "accuracy": result.accuracy, **named, "accuracy_short": metrics["accuracy"]}
        model = self._model(trial.number, candidate, metrics, origin)
        return completed(
            plan, base, metrics, result.history if stopper is not None else epochs, stopper is not None, model
        )

    def _screen(self, trial: Trial, origin: str, base: TrialOutcome, costs: dict[str, float]) -> TrialOutcome | None:
        """Store the candidate's pre-fine-tune point (other workers compare with it while this trial runs); with
        ``search.screening`` on, stop a sampled candidate that enough earlier points dominate (search/_screening.py)."""
        plan = self.plan
        point = screen_point(trial.number, plan.scoring, costs).stored()
        self.writer.progress(trial, screening=point)
        settings = plan.config.search.screening
        if not settings.enabled or origin != "sampler":
            return None
        earlier = earlier_points(trial.study.get_trials(deepcopy=False), trial.number)
        reason = Screening(settings.min_dominating).decide(screen_point(trial.number, plan.scoring, costs), earlier)
        return stopped(base, reason, metrics=dict(costs), screening=point) if reason else None

    def _promote(
        self,
        trial: Trial,
        origin: str,
        candidate: Candidate,
        short: float,
        costs: dict[str, float],
        epochs: list[float],
        timer: StepTimer,
    ) -> FinetuneResult | None:
        """Successive halving's second rung: store the short fine-tune point (other workers compare with it),
        decide (``Promotion``) and, when promoted, fine-tune ``search.promote.epochs`` more."""
        plan, settings = self.plan, self.plan.config.search.promote
        score = plan.scoring.score_of({**costs, "accuracy": short})
        point = RungPoint(
            trial.number,
            short if score is None else score,
            tuple(float(costs[OBJECTIVES[c].metric]) for c in plan.scoring.costs),
            within_budgets(plan.budgets, costs) if plan.budgets else True,
        )
        earlier = rung_points(trial.study.get_trials(deepcopy=False), trial.number)
        promoted, reason = Promotion(settings.top).decide(point, earlier, origin != "sampler", bool(plan.budgets))
        self.writer.progress(trial, promotion={**point.stored(), "promoted": promoted, "reason": reason})
        if not promoted:
            return None
        done = len(epochs)
        with timer.step("promote"):
            return plan.workload.task.fine_tune(
                candidate.model,
                plan.workload.datamodule,
                epochs=settings.epochs,
                lr=plan.config.finetune.lr,
                max_batches=settings.max_batches,
                seed=plan.config.seed + trial.number + 7919,  # not the short fine-tune's batch order again
                on_epoch=lambda epoch, score: self._epoch(trial.number, epochs, done + epoch, score, None),
                **finetune_options(plan.config, teacher=plan.workload.model),
            )

    def _early_stopping(self, trial: Trial, costs: dict[str, float]) -> TrialPruningCallback | None:
        """The per-epoch stop rule the config names (``search.pruner``), for this candidate (None: train every
        epoch)."""
        plan = self.plan
        if plan.config.finetune.epochs < 2:
            return None
        dense_accuracy = plan.dense["accuracy"]
        context = StopContext(
            trial,
            costs,
            tuple(OBJECTIVES[c].metric for c in plan.scoring.costs),
            lambda accuracy: plan.scoring.intermediate(accuracy, costs, dense_accuracy),
            plan.config.search.min_dominating,
            plan.config.finetune.epochs,
        )
        decide = EARLY_STOPPING.get(plan.config.search.pruner).decision(context)
        return TrialPruningCallback(decide) if decide is not None else None

    def _model(self, number: int, candidate: Candidate, metrics: dict[str, float], origin: str) -> TrialModel:
        """Everything needed to rebuild the candidate: its vector, fine-tuned weights and a manifest."""
        plan = self.plan
        weights = plan.space.finalize(candidate.model).state_dict()
        info = {
            **self.manifest,
            "trial": number,
            "origin": origin,
            "sparsity": candidate.vector,
            "metrics": metrics,
            "input_shape": [1, *plan.workload.example.shape[1:]],
        }
        profile, layers, vector = self.profile, list(plan.space.names), candidate.vector
        return TrialModel(weights, info, (lambda: profile(number, vector, layers)) if profile is not None else None)

    def _epoch(
        self, number: int, epochs: list[float], epoch: int, score: float, stopper: TrialPruningCallback | None
    ) -> None:
        epochs.append(score)
        if stopper is not None:
            stopper.observe(epoch, score)  # the task's score: the built-in accuracy or the user module's metric
        self.writer.epoch(number, epoch, score, self.plan.workload.task.named(score))
        fault("fine_tune", number)

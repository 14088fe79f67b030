"""The typed records of what a study keeps in Optuna's user attributes: one per trial, one per study.

Only this module knows the attribute keys (docs/design.md, "Optuna study"): the trial loop writes
through :func:`write_trial`, and the report, rebuild, export, early stopping and reconciliation read
:class:`TrialRecord` / :class:`StudyRecord`. Torch-free: ``prunetuna report`` imports it.

The keys of its MLflow layout live here too (:class:`Tag`, :class:`Role`, :class:`RunStatus`, :class:`TrialEnd`,
:class:`WeightsMark`): the strings users filter on (docs/design.md, "MLflow layout"); changing one breaks their
queries, and studies written before.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from prunetuna.sparsity import SparsityVector, canonical, from_params

APPLIED_ATTR = "sparsity"  # the trial attribute holding the applied vector

__all__ = [
    "Role",
    "RunStatus",
    "Tag",
    "TrialEnd",
    "WeightsMark",
    "APPLIED_ATTR",
    "BudgetStatus",
    "StudyRecord",
    "TrialRecord",
    "enqueue_attrs",
    "set_study_fields",
    "write_study",
    "write_stored_trial",
    "write_trial",
]


class TrialEnd(str, enum.Enum):
    """How a trial ended, as Optuna names its state (the ``optuna.state`` tag of the trial's run)."""

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"

    @property
    def finished(self) -> bool:
        """COMPLETE and PRUNED count towards ``n_trials``; their run ends FINISHED."""
        return self is not TrialEnd.FAIL


class RunStatus(str, enum.Enum):
    """An MLflow run's status."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Role(str, enum.Enum):
    """What a run of the study's experiment is (the ``prunetuna.role`` tag)."""

    STUDY = "study"  # the parent run
    SUPERSEDED = "study-superseded"  # a parent run created by a worker that lost the election (store/_election.py)
    TRIAL = "trial"
    SENSITIVITY = "sensitivity"
    EXPORT = "export"
    FINETUNE = "finetune"  # prunetuna finetune: a child of the trial's run


class WeightsMark(str, enum.Enum):
    """The ``prunetuna.weights`` tag of a COMPLETE trial's run whose ``model/`` files ``search.keep_weights: front``
    removes: DROPPING before the files go, DROPPED once they are gone (from MLflow and the local record). A run so
    marked is off the study's front for good: reconcile does not restore its files and export refuses it."""

    DROPPING = "dropping"
    DROPPED = "dropped"


class Tag:
    """Run tag keys."""

    ROLE = "prunetuna.role"
    ORIGIN = "prunetuna.origin"  # sampler, or the baseline that enqueued the trial
    BUDGET = "prunetuna.budget"
    FEASIBLE = "prunetuna.feasible"
    BELOW_CHANCE = "prunetuna.below_chance"  # "true" on a built-in classifier's COMPLETE trial at or below 1/classes
    FAIL_REASON = "prunetuna.fail_reason"
    PRUNED_REASON = "prunetuna.pruned_reason"
    STUDY = "prunetuna.study"
    TRIAL = "prunetuna.trial"
    FORMAT = "prunetuna.format"
    SOURCE_RUN = "prunetuna.source_run_id"
    WEIGHTS = "prunetuna.weights"  # WeightsMark: a COMPLETE trial's model/ removed (search.keep_weights: front)
    SUPERSEDED_BY = "prunetuna.superseded_by"  # on a superseded parent run: the parent run that won
    FINETUNE_KEY = "prunetuna.finetune_key"  # the final_finetune settings (and the trial's run) a fine-tune ran with
    STATE = "optuna.state"  # RUNNING, then the TrialEnd
    TRIAL_NUMBER = "optuna.trial_number"
    PARENT = "mlflow.parentRunId"
    EXPERIMENT_KIND = "mlflow.experimentKind"  # the MLflow UI then opens the study on its training runs


class BudgetStatus(str, enum.Enum):
    """What the budget did to a candidate: no budget, within it as sampled, projected onto it, over it at
    max_sparsity."""

    NONE = ""
    WITHIN = "within"
    PROJECTED = "projected"
    OVER = "over"


@dataclass(frozen=True)
class TrialRecord:
    """One trial's user attributes. Field names are the attribute keys, except ``sparsity`` (``APPLIED_ATTR``)."""

    origin: str = "sampler"  # sampler, or the baseline that enqueued it (uniform, global)
    sparsity: SparsityVector = field(default_factory=dict)  # the applied vector: the one source of every rebuild
    metrics: dict[str, float] = field(default_factory=dict)
    budget: BudgetStatus = BudgetStatus.NONE
    projection_t: float | None = None
    feasible: bool | None = None  # None: the study has no constraint
    below_chance: bool = False  # a built-in classifier's COMPLETE trial at or below 1/classes (a diverged fine-tune)
    fail_reason: str | None = None
    pruned_reason: str | None = None
    epoch_accuracy: tuple[float, ...] = ()
    mlflow_run_id: str | None = None
    warm_start_level: float | None = None
    retry_of: int | None = None
    tracking_away: bool = False
    screening: dict[str, Any] | None = (
        None  # the pre-fine-tune point {score, costs} screening compares (search/_screening.py)
    )
    promotion: dict[str, Any] | None = None  # the short fine-tune point {score, costs, feasible}, then promoted/reason
    candidates: tuple[dict[str, Any], ...] = ()  # search.screening.candidates: every draw, its score, why dropped
    heartbeat_of: int | None = None  # the trial's own number once its first heartbeat is recorded (a retry copies
    # the stale trial's attributes, so a number that is not its own means it never beat)

    @classmethod
    def of(cls, trial: Any) -> TrialRecord:
        """The record of an Optuna trial (``FrozenTrial`` or live ``Trial``)."""
        attrs = trial.user_attrs
        stored = attrs.get(APPLIED_ATTR)
        return cls(
            origin=str(attrs.get("origin", "sampler")),
            sparsity=canonical(stored) if stored is not None else from_params(trial.params),
            metrics=dict(attrs.get("metrics", {})),
            budget=BudgetStatus(attrs.get("budget") or ""),
            projection_t=attrs.get("projection_t"),
            feasible=attrs.get("feasible"),
            below_chance=bool(attrs.get("below_chance", False)),
            fail_reason=attrs.get("fail_reason"),
            pruned_reason=attrs.get("pruned_reason"),
            epoch_accuracy=tuple(attrs.get("epoch_accuracy") or ()),
            mlflow_run_id=attrs.get("mlflow_run_id"),
            warm_start_level=attrs.get("warm_start_level"),
            retry_of=attrs.get("retry_of"),
            tracking_away=bool(attrs.get("tracking_away", False)),
            screening=attrs.get("screening"),
            promotion=attrs.get("promotion"),
            candidates=tuple(attrs.get("candidates") or ()),
            heartbeat_of=attrs.get("heartbeat_of"),
        )

    @property
    def is_feasible(self) -> bool:
        return self.feasible is not False

    @property
    def has_metrics(self) -> bool:
        return bool(self.metrics)


_TRIAL_KEYS = {f.name: (APPLIED_ATTR if f.name == "sparsity" else f.name) for f in fields(TrialRecord)}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def write_trial(trial: Any, **values: Any) -> None:
    """Set some of a live trial's record fields (``write_trial(trial, metrics=m, budget=BudgetStatus.OVER)``)."""
    for key, value in _trial_attrs(values):
        trial.set_user_attr(key, value)


def write_stored_trial(storage: Any, trial_id: int, **values: Any) -> None:
    """``write_trial`` for a trial known only by its storage id (a frozen trial, inside Optuna's ``ask`` or another
    process's); the storage refuses a trial that has finished."""
    for key, value in _trial_attrs(values):
        storage.set_trial_user_attr(trial_id, key, value)


def _trial_attrs(values: dict[str, Any]) -> list[tuple[str, Any]]:
    """Record fields as (user-attribute key, stored value); an unknown field is refused."""
    unknown = [name for name in values if name not in _TRIAL_KEYS]
    if unknown:
        raise KeyError(f"TrialRecord has no field {unknown[0]!r}")
    return [(_TRIAL_KEYS[name], _plain(value)) for name, value in values.items()]


def enqueue_attrs(**values: Any) -> dict[str, Any]:
    """Record fields as the ``user_attrs`` of ``study.enqueue_trial`` (an enqueued trial starts with them)."""
    return {_TRIAL_KEYS[name]: _plain(value) for name, value in values.items()}


@dataclass(frozen=True)
class StudyRecord:
    """The study's user attributes: how it scores, its dense model, its dimensions, its MLflow parent run."""

    objectives: tuple[str, ...] = ()
    mode: str = "pareto"
    dense: dict[str, float] = field(default_factory=dict)
    latency_settings: dict[str, Any] = field(default_factory=dict)
    latency_device: dict[str, Any] | None = (
        None  # where latency is measured: this machine, or the device agent (prunetuna.device)
    )
    dimensions: tuple[str, ...] = ()
    dimension_layers: dict[str, int] = field(default_factory=dict)
    method: str = "structured"
    scale: str = "linear"  # pruning.scale: what the sparsity parameters mean (a resumed study must keep it)
    constraints: dict[str, float] = field(default_factory=dict)
    tolerance: float | None = None
    metric: dict[str, str] = field(
        default_factory=lambda: {"name": "accuracy", "mode": "max"}
    )  # the task score's name (docs/design.md)
    created_at: float | None = None
    creator_beat: float | None = None  # written every few seconds by the study's creator until its parent run is out
    mlflow_parent_run_id: str | None = None

    @classmethod
    def of(cls, attrs: Mapping[str, Any]) -> StudyRecord:
        """From ``study.user_attrs`` (or the storage's ``get_study_user_attrs``); missing keys read as defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in attrs.items() if k in known and v is not None}
        for name in ("objectives", "dimensions"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    @property
    def costs(self) -> list[str]:
        return [name for name in self.objectives if name != "accuracy"]

    def stored(self) -> dict[str, Any]:
        """The attributes a search writes at every start (``created_at``, the creator's beat and the parent run are
        written apart)."""
        skip = {"created_at", "creator_beat", "mlflow_parent_run_id"}
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in skip}


def set_study_fields(study: Any, **values: Any) -> None:
    """Set some of a study's record fields (``set_study_fields(study, mlflow_parent_run_id=run_id)``)."""
    known = {f.name for f in fields(StudyRecord)}
    for name, value in values.items():
        if name not in known:
            raise KeyError(f"StudyRecord has no field {name!r}")
        study.set_user_attr(name, _plain(value))


def write_study(study: Any, record: StudyRecord, existing: Mapping[str, Any]) -> None:
    """Write the record's attributes that differ from ``existing`` (the study's attributes as read)."""
    for key, value in record.stored().items():
        if existing.get(key) != value:
            study.set_user_attr(key, value)

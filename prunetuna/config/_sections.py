"""The sections of the experiment YAML (``model``, ``data``, ``pruning``, ``search`` ...): typed, validated,
torch-free. :class:`prunetuna.config.ExperimentConfig` holds one of each."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prunetuna.config._names import (
    EARLY_STOPPING_NAMES,
    GRADIENT_IMPORTANCES,
    IMPORTANCE_NAMES,
    LATENCY_BACKEND_NAMES,
    METHOD_NAMES,
    SAMPLER_NAMES,
)
from prunetuna.registry import check_name

__all__ = [
    "BaselineConfig",
    "DataConfig",
    "LatencyConfig",
    "MetricConfig",
    "ModelConfig",
    "PruningConfig",
    "ScreeningConfig",
    "SearchConfig",
    "SensitivityBounds",
    "ToleranceConfig",
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Source(Section):
    """A built-in by name, or ``target: "package.module:callable"`` called with ``kwargs``."""

    builtin: str | None = None
    target: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> Source:
        if (self.builtin is None) == (self.target is None):
            raise ValueError("give exactly one of 'builtin' or 'target'")
        return self


class ModelConfig(Source):
    checkpoint: str | None = None
    trusted_checkpoint: bool = False  # unpickle ``checkpoint`` (an ultralytics best.pt): runs code from the file
    prune: str | None = (
        None  # with a LightningModule target: the attribute path of the nn.Module to prune (default: all of it)
    )

    @model_validator(mode="after")
    def _trust_needs_checkpoint(self) -> ModelConfig:
        if self.trusted_checkpoint and self.checkpoint is None:
            raise ValueError("trusted_checkpoint goes with checkpoint: name the file or remove it")
        return self


class MetricConfig(Section):
    """The task score a user's LightningModule logs in validation (``self.log(name, ...)``) and its direction."""

    name: str = Field(min_length=1)
    mode: Literal["max", "min"] = "max"


class DataConfig(Source):
    batch_size: int = Field(64, ge=1)


class BaselineConfig(Section):
    epochs: int = Field(5, ge=0)
    lr: float = Field(1e-3, gt=0)


class SensitivityBounds(Section):
    max_drop: float = Field(gt=0, lt=1)  # per-dimension bound: the largest ratio losing at most this accuracy alone


class PruningConfig(Section):
    method: Literal[METHOD_NAMES] = "structured"  # type: ignore[valid-type]
    nm: list[int] = Field(default_factory=lambda: [2, 4])  # N:M for method nm: keep N of every M weights
    importance: str = "l2"
    max_sparsity: float = 0.8
    step: float = Field(0.05, gt=0)
    scale: Literal["linear", "log"] = (
        "linear"  # linear: sparsity on the step grid; log: kept fraction, log scale, continuous
    )
    ignore: list[str] = Field(default_factory=list)
    round_to: int | None = Field(None, ge=1)
    granularity: Literal["layer", "block", "stage"] = "layer"
    groups: dict[str, list[str]] = Field(default_factory=dict)  # explicit ties: {name: [layer-name patterns]}
    calibration_batches: int = Field(4, ge=0)  # BN recalibration (accuracy_pruned) and gradients for taylor
    bounds_from_sensitivity: SensitivityBounds | None = None
    graph_seconds: float = Field(30.0, gt=0)  # guard on torch-pruning's dependency graph: wall time ...
    graph_memory_gb: float = Field(4.0, gt=0)  # ... and resident memory gained while it is built

    @field_validator("max_sparsity")
    @classmethod
    def _bound(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"must lie in [0, 1), got {value}")
        return value

    @field_validator("importance")
    @classmethod
    def _importance(cls, value: str) -> str:
        return check_name("importance", value, IMPORTANCE_NAMES)

    @model_validator(mode="after")
    def _step_fits(self) -> PruningConfig:
        if self.max_sparsity > 0 and self.step > self.max_sparsity:
            raise ValueError(f"step {self.step} is larger than max_sparsity {self.max_sparsity}")
        if len(self.nm) != 2 or not 0 < self.nm[0] < self.nm[1]:
            raise ValueError(f"nm must be [N, M] with 0 < N < M, got {self.nm}")
        if self.scale == "log" and self.method == "nm":
            raise ValueError(
                "scale 'log' draws continuous ratios; method 'nm' has one (a layer is dense or N:M): use scale 'linear'"
            )
        if self.importance in GRADIENT_IMPORTANCES and self.calibration_batches == 0:
            raise ValueError(
                f"importance {self.importance!r} needs gradients: set pruning.calibration_batches to 1 or more"
            )
        return self


class LatencyConfig(Section):
    """How latency is measured: on this machine's CPU, median of ``repeats`` after ``warmup``, fixed threads."""

    backend: str = "torch"
    batch_size: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)
    warmup: int = Field(10, ge=0)
    repeats: int = Field(50, ge=5)
    max_ci: float = Field(0.05, gt=0)  # measured again when the median's 95% interval is wider than this share
    attempts: int = Field(3, ge=1)
    every_trial: bool = (
        True  # speedup beside FLOPs reduction in every trial; else only when latency is an objective or budget
    )
    url: str | None = (
        None  # backend remote: the device agent, e.g. http://board.local:8765 (token: $PRUNETUNA_DEVICE_TOKEN)
    )
    provider: str | None = (
        None  # backend remote: the agent's onnxruntime execution provider (default CPUExecutionProvider)
    )
    cache: bool = True  # candidates with identical pruned shapes share measurements, kept with the study

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        return check_name("latency backend", value, LATENCY_BACKEND_NAMES)

    @model_validator(mode="after")
    def _remote(self) -> LatencyConfig:
        from prunetuna.device import check_agent_url

        if self.backend == "remote":
            if self.url is None:
                raise ValueError(
                    "backend remote measures on a device agent: set latency.url, e.g. http://board.local:8765"
                )
            check_agent_url(self.url)
        elif self.url is not None or self.provider is not None:
            raise ValueError(f"latency.url and latency.provider go with backend remote, not {self.backend!r}")
        return self


class ToleranceConfig(Section):
    accuracy_drop: float

    @field_validator("accuracy_drop")
    @classmethod
    def _drop(cls, value: float) -> float:
        if value < 0.0:
            raise ValueError(
                "must be >= 0 (a fraction for accuracy: 0.01 is one point; in the metric's units with metric:), got "
                f"{value}"
            )
        return value


class ScreeningConfig(Section):
    """Screening before fine-tuning (search/_screening.py): stop a candidate whose pre-fine-tune score and
    costs ``min_dominating`` earlier candidates dominate; ``candidates`` K > 1: a sampled trial draws K candidates
    and fine-tunes the best by that score (search/_candidate.py), whether or not ``enabled``."""

    enabled: bool = False
    min_dominating: int = Field(3, ge=1)
    candidates: int = Field(1, ge=1)


class PromoteConfig(Section):
    """Successive halving's second rung (search/_early_stopping.py ``Promotion``): a candidate whose short
    fine-tune score ranks among the ``top`` best so far is fine-tuned ``epochs`` more before it is scored;
    enqueued baselines always are, so the search and they are compared after the same longer fine-tune."""

    top: int = Field(0, ge=0)  # 0: off
    epochs: int = Field(1, ge=1)
    max_batches: int | None = Field(None, ge=1)  # per promoted epoch; None: whole epochs


class SearchConfig(Section):
    sampler: str = "tpe"
    n_trials: int = Field(20, ge=1)
    max_failures: int = Field(5, ge=1)
    heartbeat: int = Field(10, ge=1)  # seconds; a trial silent for 3 heartbeats is failed and retried
    pruner: str = "none"  # early stopping: none | median | hyperband (one objective) | dominated (any)
    min_dominating: int = Field(3, ge=1)  # dominated: stop when this many earlier trials dominate at the same epoch
    warm_start: bool = True  # enqueue the baselines' allocations at each level first
    baselines: list[Literal["uniform", "global", "sensitivity"]] = Field(
        default_factory=lambda: ["uniform", "global"]
    )  # sensitivity: the threshold allocation from the sensitivity scan (FastNAS / AIMET)
    warm_start_levels: list[float] = Field(default_factory=list)  # cost ratios; default: the ratio budget, if any
    screening: ScreeningConfig = ScreeningConfig()  # stop dominated candidates before their fine-tune
    promote: PromoteConfig = PromoteConfig()  # fine-tune the best short-fine-tune candidates longer
    projection: Literal["toward_max", "relative"] = "toward_max"  # how a sample meets a ratio budget
    keep_weights: Literal["all", "front"] = "all"  # front: a COMPLETE trial's weights are removed once it is dominated

    @field_validator("warm_start_levels")
    @classmethod
    def _levels(cls, value: list[float]) -> list[float]:
        for level in value:
            if not 0.0 < level <= 1.0:
                raise ValueError(f"a level is a ratio to the dense model in (0, 1], got {level}")
        return value

    @field_validator("baselines")
    @classmethod
    def _baselines(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"a baseline is listed twice: {value}")
        return value

    @field_validator("pruner")
    @classmethod
    def _pruner(cls, value: str) -> str:
        return check_name("pruner", value, EARLY_STOPPING_NAMES)

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, value: str) -> str:
        return check_name("sampler", value, SAMPLER_NAMES)

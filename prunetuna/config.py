"""Experiment YAML: validated into typed settings before anything else runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prunetuna.errors import UserError

__all__ = [
    "BaselineConfig",
    "DataConfig",
    "ExperimentConfig",
    "FinetuneConfig",
    "LatencyConfig",
    "ModelConfig",
    "PruningConfig",
    "SearchConfig",
    "load_config",
    "parse_config",
]

# Names that later parts register; checked here so that a typo fails before any work.
OBJECTIVE_NAMES = ("accuracy", "flops", "params", "size", "latency")
COST_NAMES = ("flops", "params", "size", "latency")
# Budget keys: a cost name is a ratio to the dense model; these name an absolute amount of a cost.
ABSOLUTE_BUDGETS = {"flops_count": "flops", "params_count": "params", "size_bytes": "size", "latency_ms": "latency"}
LATENCY_BACKENDS = ("torch", "onnxruntime")
Mode = Literal["pareto", "tolerance", "scalarized"]
SAMPLER_NAMES = ("tpe", "nsga2", "random", "gp", "cmaes")
IMPORTANCE_NAMES = ("l1", "l2", "bn_scale", "taylor", "random")
PRUNER_NAMES = ("none", "median", "hyperband", "dominated")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _one_of(value: str, names: tuple[str, ...], what: str) -> str:
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(names)}")
    return value


class _Source(_Section):
    """A built-in by name, or ``target: "package.module:callable"`` called with ``kwargs``."""

    builtin: str | None = None
    target: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> _Source:
        if (self.builtin is None) == (self.target is None):
            raise ValueError("give exactly one of 'builtin' or 'target'")
        return self


class ModelConfig(_Source):
    checkpoint: str | None = None


class DataConfig(_Source):
    batch_size: int = Field(64, ge=1)


class BaselineConfig(_Section):
    epochs: int = Field(5, ge=0)
    lr: float = Field(1e-3, gt=0)


class SensitivityBounds(_Section):
    max_drop: float = Field(gt=0, lt=1)  # per-dimension bound: the largest ratio losing at most this accuracy alone


class PruningConfig(_Section):
    method: Literal["structured", "unstructured", "nm"] = "structured"
    nm: list[int] = Field(default_factory=lambda: [2, 4])  # N:M for method nm: keep N of every M weights
    importance: str = "l2"
    max_sparsity: float = 0.8
    step: float = Field(0.05, gt=0)
    scale: Literal["linear", "log"] = "linear"  # linear: sparsity on the step grid; log: kept fraction, log scale, continuous
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
        return _one_of(value, IMPORTANCE_NAMES, "importance")

    @model_validator(mode="after")
    def _step_fits(self) -> PruningConfig:
        if self.max_sparsity > 0 and self.step > self.max_sparsity:
            raise ValueError(f"step {self.step} is larger than max_sparsity {self.max_sparsity}")
        if len(self.nm) != 2 or not 0 < self.nm[0] < self.nm[1]:
            raise ValueError(f"nm must be [N, M] with 0 < N < M, got {self.nm}")
        if self.scale == "log" and self.method == "nm":
            raise ValueError("scale 'log' draws continuous ratios; method 'nm' has one (a layer is dense or N:M): use scale 'linear'")
        if self.importance == "taylor" and self.calibration_batches == 0:
            raise ValueError("importance 'taylor' needs gradients: set pruning.calibration_batches to 1 or more")
        return self


class FinetuneConfig(_Section):
    epochs: int = Field(2, ge=0)
    lr: float = Field(1e-3, gt=0)
    max_batches: int | None = Field(None, ge=1)


class LatencyConfig(_Section):
    """How latency is measured: on this machine's CPU, median of ``repeats`` after ``warmup``, fixed threads."""

    backend: str = "torch"
    batch_size: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)
    warmup: int = Field(10, ge=0)
    repeats: int = Field(50, ge=5)
    max_ci: float = Field(0.05, gt=0)  # measured again when the median's 95% interval is wider than this share
    attempts: int = Field(3, ge=1)
    every_trial: bool = True  # speedup beside FLOPs reduction in every trial; else only when latency is an objective or budget

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        return _one_of(value, LATENCY_BACKENDS, "latency backend")


class ToleranceConfig(_Section):
    accuracy_drop: float

    @field_validator("accuracy_drop")
    @classmethod
    def _drop(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"must lie in [0, 1) (a fraction: 0.01 is one point), got {value}")
        return value


class ScreeningConfig(_Section):
    """Screening before fine-tuning (search/_screening.py): stop a candidate whose pre-fine-tune score and
    costs ``min_dominating`` earlier candidates dominate."""

    enabled: bool = False
    min_dominating: int = Field(3, ge=1)


class SearchConfig(_Section):
    sampler: str = "tpe"
    n_trials: int = Field(20, ge=1)
    max_failures: int = Field(5, ge=1)
    heartbeat: int = Field(10, ge=1)  # seconds; a trial silent for 3 heartbeats is failed and retried
    pruner: str = "none"  # early stopping: none | median | hyperband (one objective) | dominated (any)
    min_dominating: int = Field(3, ge=1)  # dominated: stop when this many earlier trials dominate at the same epoch
    warm_start: bool = True  # enqueue the uniform and global-ranking allocations at each level first
    warm_start_levels: list[float] = Field(default_factory=list)  # cost ratios; default: the ratio budget, if any
    screening: ScreeningConfig = ScreeningConfig()  # stop dominated candidates before their fine-tune

    @field_validator("warm_start_levels")
    @classmethod
    def _levels(cls, value: list[float]) -> list[float]:
        for level in value:
            if not 0.0 < level <= 1.0:
                raise ValueError(f"a level is a ratio to the dense model in (0, 1], got {level}")
        return value

    @field_validator("pruner")
    @classmethod
    def _pruner(cls, value: str) -> str:
        return _one_of(value, PRUNER_NAMES, "pruner")

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, value: str) -> str:
        return _one_of(value, SAMPLER_NAMES, "sampler")


class ExperimentConfig(_Section):
    name: str
    seed: int = 0
    model: ModelConfig = ModelConfig(builtin="tiny-resnet")
    data: DataConfig = DataConfig(builtin="mnist-5k")
    baseline: BaselineConfig = BaselineConfig()
    pruning: PruningConfig = PruningConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    objectives: list[str] = Field(default_factory=lambda: ["accuracy", "flops"])
    constraints: dict[str, float] = Field(default_factory=dict)
    tolerance: ToleranceConfig | None = None
    scalarize: dict[str, float] | None = None
    latency: LatencyConfig = LatencyConfig()
    search: SearchConfig = SearchConfig()

    @property
    def mode(self) -> Mode:
        """pareto (one Optuna objective each), tolerance (minimize a cost at bounded accuracy loss), scalarized."""
        if self.tolerance is not None:
            return "tolerance"
        if self.scalarize is not None:
            return "scalarized"
        return "pareto"

    @property
    def costs(self) -> list[str]:
        """The costs among the objectives, in order."""
        return [name for name in self.objectives if name != "accuracy"]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(f"{value!r} must be letters, digits, '.', '_' or '-' (it names the study and a folder)")
        return value

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one objective")
        for name in value:
            if name not in OBJECTIVE_NAMES:
                raise ValueError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVE_NAMES)}")
        if len(set(value)) != len(value):
            raise ValueError(f"an objective is listed twice: {value}")
        return value

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: dict[str, float]) -> dict[str, float]:
        for name, bound in value.items():
            if name in ABSOLUTE_BUDGETS:
                if bound <= 0:
                    raise ValueError(f"{name}: an absolute budget must be positive, got {bound}")
                continue
            if name not in COST_NAMES:
                known = ", ".join([*COST_NAMES, *ABSOLUTE_BUDGETS])
                raise ValueError(f"unknown constraint {name!r}; choose from {known}")
            if not 0.0 < bound <= 1.0:
                absolute = next(k for k, v in ABSOLUTE_BUDGETS.items() if v == name)
                raise ValueError(f"{name}: {bound} is a ratio to the dense model and must lie in (0, 1]; for an absolute budget write {absolute}: {bound}")
        return value

    @field_validator("scalarize")
    @classmethod
    def _scalarize(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give a weight per cost, e.g. {flops: 0.5}")
        for name, weight in value.items():
            if name not in COST_NAMES:
                raise ValueError(f"unknown cost {name!r}; choose from {', '.join(COST_NAMES)}")
            if weight < 0:
                raise ValueError(f"{name}: a weight must be >= 0, got {weight}")
        return value

    @model_validator(mode="after")
    def _modes_fit(self) -> ExperimentConfig:
        if self.tolerance is not None and self.scalarize is not None:
            raise ValueError("give either 'tolerance' or 'scalarize', not both")
        if self.tolerance is not None and len(self.costs) != 1:
            raise ValueError(f"tolerance mode minimizes one cost: list exactly one of {', '.join(COST_NAMES)} in objectives, got {self.objectives}")
        if self.scalarize is not None and set(self.scalarize) != set(self.costs):
            raise ValueError(f"scalarize needs one weight per cost in objectives {self.costs}, got {sorted(self.scalarize)}")
        single = self.mode != "pareto" or len(self.objectives) == 1
        if self.search.pruner in ("median", "hyperband") and not single:
            raise ValueError(f"search.pruner {self.search.pruner!r} needs one objective (Optuna's pruners do not apply "
                             "to multi-objective studies); use 'dominated', or a tolerance or scalarize mode")
        if self.search.screening.enabled and self.pruning.calibration_batches == 0:
            raise ValueError("search.screening needs the pre-fine-tune score, measured after BN recalibration: "
                             "set pruning.calibration_batches to 1 or more, or search.screening.enabled: false")
        if self.search.sampler == "cmaes" and not single:
            raise ValueError("search.sampler 'cmaes' handles one objective; use tpe, nsga2, gp or random, or a tolerance or scalarize mode")
        return self


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (plain YAML 1.1 reads it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)$"),
    list("-+0123456789."),
)


def _describe(error: dict[str, Any], data: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = error["loc"][:-1]
        section = ExperimentConfig
        for part in parent:
            section = section.model_fields[str(part)].annotation  # type: ignore[assignment]
        allowed = ", ".join(section.model_fields) if isinstance(section, type) and issubclass(section, BaseModel) else ""
        return f"unknown key '{loc}'" + (f"; allowed keys here: {allowed}" if allowed else "")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "missing":
        return f"missing key '{loc}'"
    got = error.get("input")
    shown = "" if isinstance(got, dict) or kind.endswith("_error") and not loc else f" (got {got!r})"
    return f"key '{loc or '(top level)'}': {message}{shown}"


def parse_config(data: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a parsed YAML document; raise :class:`UserError` naming ``source`` and the key."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: the file must hold a mapping of keys (name, model, data, ...), not {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise UserError(f"{source}: {_describe(first, data)}{more}; fix it and rerun") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file; pass the path of an experiment YAML") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the config ({exc.__class__.__name__}); pass a readable YAML file") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise UserError(f"{path}: malformed YAML{where}: {problem}; fix the file and rerun") from None
    return parse_config(data, str(path))


def config_section(config: ExperimentConfig, *names: str) -> dict[str, Any]:
    """The named sections as plain data, for hashing and logging."""
    dumped = config.model_dump(mode="json")
    return {name: dumped[name] for name in names}

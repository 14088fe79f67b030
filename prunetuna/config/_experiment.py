"""Experiment YAML: validated into typed settings before anything else runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from prunetuna.config._finetune_sections import DistillConfig, FinalFinetuneConfig, FinetuneConfig, TrainerConfig
from prunetuna.config._names import (
    ABSOLUTE_BUDGETS,
    COST_NAMES,
    MODE_NAMES,
    OBJECTIVE_NAMES,
    SAMPLER_NAMES,
    SINGLE_OBJECTIVE_PRUNERS,
    SINGLE_OBJECTIVE_SAMPLERS,
)
from prunetuna.config._sections import (
    BaselineConfig,
    DataConfig,
    LatencyConfig,
    MetricConfig,
    ModelConfig,
    PruningConfig,
    SearchConfig,
    Section,
    SensitivityBounds,
    ToleranceConfig,
)
from prunetuna.errors import UserError
from prunetuna.registry import check_name

__all__ = [
    "BaselineConfig",
    "DataConfig",
    "DistillConfig",
    "ExperimentConfig",
    "FinalFinetuneConfig",
    "FinetuneConfig",
    "LatencyConfig",
    "MetricConfig",
    "ModelConfig",
    "PruningConfig",
    "SearchConfig",
    "SensitivityBounds",
    "ToleranceConfig",
    "TrainerConfig",
    "config_section",
    "load_config",
    "parse_config",
]

Mode = Literal[MODE_NAMES]  # type: ignore[valid-type]


class ExperimentConfig(Section):
    name: str
    seed: int = 0
    model: ModelConfig = ModelConfig(builtin="tiny-resnet")
    data: DataConfig = DataConfig(builtin="mnist-5k")
    baseline: BaselineConfig = BaselineConfig()
    pruning: PruningConfig = PruningConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    final_finetune: FinalFinetuneConfig = FinalFinetuneConfig()  # prunetuna finetune: the chosen trial's full schedule
    objectives: list[str] = Field(
        default_factory=lambda: ["accuracy", "flops"]
    )  # "metric" is another name of "accuracy": the task score
    metric: MetricConfig | None = (
        None  # a user LightningModule's logged metric (required with one); default: top-1 accuracy, max
    )
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
            check_name("objective", name, [*OBJECTIVE_NAMES, "metric"])
        value = [
            "accuracy" if name == "metric" else name for name in value
        ]  # one task-score slot (docs/design.md, "Task score")
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
            check_name("constraint", name, [*COST_NAMES, *ABSOLUTE_BUDGETS])
            if not 0.0 < bound <= 1.0:
                absolute = next(k for k, v in ABSOLUTE_BUDGETS.items() if v == name)
                raise ValueError(
                    f"{name}: {bound} is a ratio to the dense model and must lie in (0, 1]; for an absolute budget "
                    f"write {absolute}: {bound}"
                )
        return value

    @field_validator("scalarize")
    @classmethod
    def _scalarize(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give a weight per cost, e.g. {flops: 0.5}")
        for name, weight in value.items():
            check_name("cost", name, COST_NAMES)
            if weight < 0:
                raise ValueError(f"{name}: a weight must be >= 0, got {weight}")
        return value

    @model_validator(mode="after")
    def _modes_fit(self) -> ExperimentConfig:
        if self.tolerance is not None and self.scalarize is not None:
            raise ValueError("give either 'tolerance' or 'scalarize', not both")
        if self.tolerance is not None and self.metric is None and self.tolerance.accuracy_drop >= 1.0:
            raise ValueError(
                "tolerance.accuracy_drop: must lie in [0, 1) for accuracy (0.01 is one point), got "
                f"{self.tolerance.accuracy_drop}"
            )
        if self.tolerance is not None and len(self.costs) != 1:
            raise ValueError(
                f"tolerance mode minimizes one cost: list exactly one of {', '.join(COST_NAMES)} in objectives, got "
                f"{self.objectives}"
            )
        if self.scalarize is not None and set(self.scalarize) != set(self.costs):
            raise ValueError(
                f"scalarize needs one weight per cost in objectives {self.costs}, got {sorted(self.scalarize)}"
            )
        single = self.mode != "pareto" or len(self.objectives) == 1
        if self.search.pruner in SINGLE_OBJECTIVE_PRUNERS and not single:
            raise ValueError(
                f"search.pruner {self.search.pruner!r} needs one objective (Optuna's pruners do not apply "
                "to multi-objective studies); use 'dominated', or a tolerance or scalarize mode"
            )
        if self.search.screening.enabled and self.pruning.calibration_batches == 0:
            raise ValueError(
                "search.screening needs the pre-fine-tune score, measured after BN recalibration: "
                "set pruning.calibration_batches to 1 or more, or search.screening.enabled: false"
            )
        if self.search.screening.candidates > 1 and self.pruning.calibration_batches == 0:
            raise ValueError(
                "search.screening.candidates picks by the pre-fine-tune score, measured after BN recalibration: "
                "set pruning.calibration_batches to 1 or more, or search.screening.candidates: 1"
            )
        if self.search.sampler in SINGLE_OBJECTIVE_SAMPLERS and not single:
            others = ", ".join(n for n in SAMPLER_NAMES if n not in SINGLE_OBJECTIVE_SAMPLERS)
            raise ValueError(
                f"search.sampler {self.search.sampler!r} handles one objective; use one of {others}, or a tolerance "
                "or scalarize mode"
            )
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
            section = next(
                (arg for arg in get_args(section) if isinstance(arg, type) and issubclass(arg, BaseModel)), section
            )  # X | None
        allowed = (
            ", ".join(section.model_fields) if isinstance(section, type) and issubclass(section, BaseModel) else ""
        )
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
        raise UserError(
            f"{source}: the file must hold a mapping of keys (name, model, data, ...), not {type(data).__name__}"
        )
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
        raise UserError(
            f"{path}: cannot read the config ({exc.__class__.__name__}); pass a readable YAML file"
        ) from None
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

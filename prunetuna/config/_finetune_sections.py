"""The fine-tune sections of the experiment YAML: ``finetune`` with its ``trainer`` (Lightning's Trainer
arguments prunetuna lets through) and ``distill``; ``final_finetune``, the full schedule ``prunetuna finetune``
gives the chosen candidate."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from prunetuna.config._sections import Section
from prunetuna.registry import check_name

__all__ = ["ACCELERATORS", "PRECISIONS", "DistillConfig", "FinalFinetuneConfig", "FinetuneConfig", "TrainerConfig"]


ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
PRECISION_ALIASES = {
    "16": "16-mixed",
    "bf16": "bf16-mixed",
    "32": "32-true",
    "64": "64-true",
}  # as Lightning reads them
# Trainer arguments prunetuna sets itself, and the key that decides them instead.
TRAINER_OWNED = {
    "max_epochs": "finetune.epochs",
    "limit_train_batches": "finetune.max_batches",
    "callbacks": "finetune.callbacks",
    "logger": "MLflow (prunetuna logs every trial)",
    "strategy": "one device per fine-tune (--workers for several GPUs)",
}


class TrainerConfig(Section):
    """The Lightning ``Trainer`` arguments a user may set, for the dense baseline's training and every fine-tune."""

    accelerator: str = "auto"
    devices: int | list[int] = 1  # one device per fine-tune: 1 (the first visible one) or [index]
    precision: str = "32-true"
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: float | None = Field(None, gt=0)
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    deterministic: bool | None = None
    benchmark: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _owned(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, owner in TRAINER_OWNED.items():
                if key in data:
                    raise ValueError(
                        f"'{key}' is set by prunetuna ({owner}); allowed keys here: {', '.join(cls.model_fields)}"
                    )
            precision = data.get("precision")
            if (
                not isinstance(precision, bool) and str(precision) in PRECISION_ALIASES
            ):  # Lightning's short names: 16, "bf16"
                data = {**data, "precision": PRECISION_ALIASES[str(precision)]}
        return data

    @field_validator("accelerator")
    @classmethod
    def _accelerator(cls, value: str) -> str:
        return check_name("accelerator", value, ACCELERATORS)

    @field_validator("precision")
    @classmethod
    def _precision(cls, value: str) -> str:
        return check_name("precision", value, PRECISIONS)

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: int | list[int]) -> int | list[int]:
        if value != 1 and not (isinstance(value, list) and len(value) == 1 and value[0] >= 0):
            raise ValueError(
                "one device per fine-tune: 1 (the first visible one) or [index]; "
                "use --workers N to run fine-tunes on N devices at once"
            )
        return value

    @property
    def automatic_optimization(self) -> bool:
        """Settings that Lightning applies only around its own optimizer step (accumulation, clipping, AMP scaling)."""
        return self.accumulate_grad_batches != 1 or self.gradient_clip_val is not None or self.precision != "32-true"

    def trainer_kwargs(self) -> dict[str, Any]:
        """The arguments for ``lightning.pytorch.Trainer``; unset ones are left to Lightning's defaults."""
        kwargs = self.model_dump()
        if self.gradient_clip_val is None:
            kwargs.pop("gradient_clip_val"), kwargs.pop("gradient_clip_algorithm")
        return {key: value for key, value in kwargs.items() if value is not None}


class DistillConfig(Section):
    """Knowledge distillation from the dense model: loss = (1 - alpha) * task loss + alpha * T^2 * KL(teacher ||
    student)."""

    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(4.0, gt=0)


class FinetuneConfig(Section):
    epochs: int = Field(2, ge=0)
    lr: float = Field(1e-3, gt=0)
    max_batches: int | None = Field(None, ge=1)
    max_images: int | None = Field(None, ge=1)  # the same budget in images: ceil(max_images / batch size) batches
    trainer: TrainerConfig = TrainerConfig()
    callbacks: list[str] = Field(
        default_factory=list
    )  # "package.module:callable" targets, each returning a Lightning Callback
    distill: DistillConfig | None = None

    @field_validator("callbacks")
    @classmethod
    def _callbacks(cls, value: list[str]) -> list[str]:
        for spec in value:
            module, sep, attr = spec.partition(":")
            if not sep or not module or not attr:
                raise ValueError(f"{spec!r} is not of the form 'package.module:callable'")
        return value

    @model_validator(mode="after")
    def _one_budget(self) -> FinetuneConfig:
        if self.max_batches is not None and self.max_images is not None:
            raise ValueError("max_batches and max_images both set: give the per-epoch budget in one of them")
        return self

    def batches_per_epoch(self, batch_size: int | None) -> int | None:
        """Training batches per epoch: ``max_batches``, or ``max_images`` in batches of ``batch_size`` (rounded up);
        None: the whole training set."""
        if self.max_images is None:
            return self.max_batches
        return -(-self.max_images // max(1, batch_size or 1))


class FinalFinetuneConfig(Section):
    """``prunetuna finetune``: the chosen trial's full fine-tune (``finetune.trainer`` and ``.callbacks`` apply too)."""

    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)  # the built-in classifier's; a LightningModule's configure_optimizers decides its own
    max_batches: int | None = Field(None, ge=1)
    seed: int | None = None  # default: the config's seed
    distill: DistillConfig | None = None  # from the dense baseline, as finetune.distill

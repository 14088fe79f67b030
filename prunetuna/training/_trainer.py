"""The user's Lightning settings for every fine-tune and the dense baseline: ``finetune.trainer`` and
``finetune.callbacks``.

Checked once before any store is written (:func:`check_finetune`): Lightning is asked to build a
Trainer with the settings (so an accelerator this machine lacks is refused in one line), and every
callback target is imported and called once, and must return a ``lightning.pytorch.Callback``.
Each fit then gets fresh callbacks (they may keep state) from the same factories.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import lightning.pytorch as pl
from torch import nn

from prunetuna.config import ExperimentConfig, FinetuneConfig, TrainerConfig, import_target
from prunetuna.errors import UserError
from prunetuna.training._distill import Distillation

__all__ = ["TrainerSetup", "check_finetune", "finetune_options", "trainer_setup"]


@dataclass(frozen=True)
class TrainerSetup:
    """Trainer keyword arguments, callback factories, and whether Lightning must drive the optimizer step."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    callback_factories: tuple[Callable[[], pl.Callback], ...] = ()
    automatic_optimization: bool = False

    def callbacks(self) -> list[pl.Callback]:
        return [factory() for factory in self.callback_factories]


def _one_line(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"


def _callback_factory(spec: str, index: int) -> Callable[[], pl.Callback]:

    key = f"finetune.callbacks[{index}]"
    factory = import_target(spec, key)
    try:
        made = factory()
    except Exception as exc:  # noqa: BLE001 - a target that cannot be called without arguments is the user's
        raise UserError(f"{key}: calling {spec!r} failed ({_one_line(exc)}); it is called without arguments") from None
    if not isinstance(made, pl.Callback):
        raise UserError(f"{key}: {spec!r} returned {type(made).__name__}, not a lightning.pytorch.Callback")
    return factory


@functools.lru_cache(maxsize=8)
def _factories(specs: tuple[str, ...]) -> tuple[Callable[[], pl.Callback], ...]:
    return tuple(_callback_factory(spec, index) for index, spec in enumerate(specs))


def _check_trainer(settings: TrainerConfig) -> None:
    try:
        pl.Trainer(
            **settings.trainer_kwargs(),
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except Exception as exc:  # noqa: BLE001 - Lightning refusing the settings on this machine is bad input
        raise UserError(
            f"finetune.trainer: Lightning refuses these settings here ({_one_line(exc)}); "
            f"change finetune.trainer ({settings.trainer_kwargs()})"
        ) from None


def trainer_setup(finetune: FinetuneConfig) -> TrainerSetup:
    """What ``finetune.trainer`` and ``finetune.callbacks`` ask of every fit."""
    return TrainerSetup(
        finetune.trainer.trainer_kwargs(),
        _factories(tuple(finetune.callbacks)),
        finetune.trainer.automatic_optimization,
    )


def check_finetune(finetune: FinetuneConfig) -> None:
    """Refuse, in one line, Trainer settings Lightning cannot use here and callback targets that do not resolve."""
    from prunetuna.runtime import quiet_lightning

    quiet_lightning()
    _check_trainer(finetune.trainer)
    _factories(tuple(finetune.callbacks))


def finetune_options(config: ExperimentConfig, teacher: nn.Module | None = None) -> dict[str, Any]:
    """``fine_tune`` keyword arguments for a candidate: the Trainer setup and, with ``finetune.distill``, the dense
    teacher."""
    distill = config.finetune.distill
    return {
        "trainer": trainer_setup(config.finetune),
        "distill": Distillation(teacher, distill.alpha, distill.temperature)
        if distill is not None and teacher is not None
        else None,
    }

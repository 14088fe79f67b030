"""Knowledge distillation from the dense model while a candidate is fine-tuned (``finetune.distill``).

The built-in classifier mixes its cross-entropy with Hinton's loss on softened logits::

    loss = (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The teacher is a frozen copy of the dense model, put on the student's device and dtype when the
fit starts, run in eval mode without gradients, once per training batch.

A user's LightningModule takes part through one hook (see docs/guides/own-lightningmodule.md)::

    def distillation_step(self, batch, batch_idx, teacher_outputs) -> torch.Tensor | dict:
        ...  # the loss to minimize, as training_step returns it

While distilling, prunetuna calls it instead of ``training_step``, with the teacher's outputs on the
batch's inputs (``teacher(inputs)``, inputs: ``batch[0]`` of a tuple or list, the first value of a
dict, or the batch itself).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import MethodType
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F

from prunetuna.errors import UserError

__all__ = ["HOOK", "Distillation", "distillation_loss", "use_distillation_hook"]

HOOK = "distillation_step"


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, alpha: float, temperature: float
) -> torch.Tensor:
    """(1 - alpha) * cross-entropy + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)), batch mean."""
    task = F.cross_entropy(student, targets)
    if alpha == 0:
        return task
    soft = F.kl_div(
        F.log_softmax(student.float() / temperature, dim=1),
        F.log_softmax(teacher.float() / temperature, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    return (1 - alpha) * task + alpha * temperature**2 * soft


@dataclass
class Distillation:
    """The dense model as teacher, with the mixing weight ``alpha`` and the temperature."""

    teacher: nn.Module
    alpha: float = 0.5
    temperature: float = 4.0
    key: str = "finetune.distill"  # the YAML key that asked for it, named in its errors

    def frozen_copy(self, device: torch.device, dtype: torch.dtype) -> nn.Module:
        """A copy of the teacher on ``device`` in ``dtype``, in eval mode, without gradients (the dense model stays
        as it is)."""
        teacher = copy.deepcopy(self.teacher).to(device=device, dtype=dtype if dtype.is_floating_point else None)
        teacher.eval()
        teacher.requires_grad_(False)
        return teacher

    def loss(self, student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return distillation_loss(student, teacher, targets, self.alpha, self.temperature)


def batch_inputs(batch: Any) -> Any:
    """What the teacher is called on: ``x`` of ``(x, y)``, the first value of a dict batch, or the batch."""
    if isinstance(batch, (list, tuple)) and batch:
        return batch[0]
    if isinstance(batch, dict) and batch:
        return next(iter(batch.values()))
    return batch


def use_distillation_hook(module: pl.LightningModule, distill: Distillation) -> None:
    """Make a user's module train on ``distillation_step(batch, batch_idx, teacher_outputs)`` for this fit.

    Its ``training_step`` is replaced on the instance (the class is untouched) by one that runs the
    teacher once on the batch's inputs and hands its outputs to the hook. A module without the hook
    is bad input.
    """
    hook = getattr(module, HOOK, None)
    if not callable(hook):
        raise UserError(
            f"{distill.key}: {type(module).__name__} defines no {HOOK}(self, batch, batch_idx, teacher_outputs) "
            f"returning its loss; add it, or remove {distill.key}"
        )
    state: dict[str, nn.Module] = {}

    def training_step(self: pl.LightningModule, batch: Any, batch_idx: int, *args: Any, **kwargs: Any) -> Any:
        teacher = state.get("teacher")
        if teacher is None:
            parameter = next(self.parameters(), None)
            dtype = parameter.dtype if parameter is not None else torch.float32
            teacher = state["teacher"] = distill.frozen_copy(self.device, dtype)
        with torch.no_grad():
            outputs = teacher(batch_inputs(batch))
        return hook(batch, batch_idx, outputs)

    module.training_step = MethodType(training_step, module)  # type: ignore[method-assign]

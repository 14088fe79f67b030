"""finetune.distill: Hinton's loss from a frozen dense teacher, on and off, and the hook for a user's
LightningModule."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import optuna
import pytest
import torch
from mlflow import MlflowClient
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.errors import UserError
from prunetuna.training import Distillation, distillation_loss, fine_tune, use_distillation_hook
from prunetuna.workload import TinyResNet, digits

runner = CliRunner()


def test_loss_is_hintons_and_differs_from_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(16, 10, generator=generator), torch.randn(16, 10, generator=generator) * 3
    targets = torch.randint(0, 10, (16,), generator=generator)
    alpha, t = 0.5, 4.0
    p_teacher = torch.softmax(teacher / t, dim=1)
    kl = (p_teacher * (torch.log(p_teacher) - torch.log_softmax(student / t, dim=1))).sum(dim=1).mean()
    expected = (1 - alpha) * F.cross_entropy(student, targets) + alpha * t**2 * kl
    got = distillation_loss(student, teacher, targets, alpha, t)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, F.cross_entropy(student, targets))
    assert torch.equal(distillation_loss(student, teacher, targets, 0.0, t), F.cross_entropy(student, targets))
    assert (
        distillation_loss(teacher, teacher, targets, 1.0, t).abs() < 1e-6
    )  # a student that matches its teacher: no KD loss


def _teacher() -> nn.Module:
    torch.manual_seed(0)
    teacher = TinyResNet(width=8)
    fine_tune(teacher, digits(batch_size=32), epochs=1, lr=0.01, seed=0, max_batches=20)
    return teacher


def _student_after(distill: Distillation | None, epochs: int = 1) -> tuple[list[torch.Tensor], list[float]]:
    torch.manual_seed(1)
    student = TinyResNet(width=4)
    result = fine_tune(student, digits(batch_size=32), epochs=epochs, lr=0.01, seed=0, max_batches=5, distill=distill)
    return [p.detach().clone() for p in student.parameters()], result.history


def test_teacher_runs_frozen_once_per_training_batch_and_is_left_untouched() -> None:
    teacher = _teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    calls: list[tuple[bool, bool, str]] = []
    # the hook is carried into the frozen copy the fine-tune makes (deepcopy keeps hooks; the list is shared)
    handle = teacher.register_forward_hook(
        lambda m, i, o: calls.append((m.training, torch.is_grad_enabled(), str(i[0].device)))
    )
    _student_after(Distillation(teacher, 0.5, 4.0), epochs=2)
    handle.remove()
    assert len(calls) == 2 * 5, "once per training batch (5 batches, 2 epochs), never in validation"
    assert all(mode == (False, False, "cpu") for mode in calls), calls[
        :3
    ]  # eval mode, no gradients, the student's device
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items()), "the dense model is not trained"
    assert teacher.training and next(teacher.parameters()).device.type == "cpu"


def test_distillation_on_and_off() -> None:
    teacher = _teacher()
    plain, plain_history = _student_after(None)
    off, off_history = _student_after(Distillation(teacher, 0.0, 4.0))  # alpha 0: the task loss alone
    on, _ = _student_after(Distillation(teacher, 0.5, 4.0))
    assert all(torch.equal(a, b) for a, b in zip(plain, off)) and plain_history == off_history
    assert not all(torch.equal(a, b) for a, b in zip(plain, on))


def test_search_with_distillation_end_to_end(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        tiny_config(
            "distill",
            finetune={"distill": {"alpha": 0.7, "temperature": 2.0}},
            search={"sampler": "random", "n_trials": 2},
        ),
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="distill", storage=f"sqlite:///{tmp_path / 'w' / 'optuna.db'}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2 and all(0 <= t.user_attrs["metrics"]["accuracy"] <= 1 for t in complete)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'w' / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("distill").experiment_id], "tags.`prunetuna.role` = 'trial'"
    )
    assert runs and all(r.data.params["finetune.distill"] == str({"alpha": 0.7, "temperature": 2.0}) for r in runs)


class UserModule(pl.LightningModule):
    """A user's module: its own loss; ``distillation_step`` is what prunetuna calls while distilling."""

    def __init__(self, hook: bool = True) -> None:
        super().__init__()
        self.net = nn.Linear(4, 3)
        self.steps: list[torch.Tensor] = []
        if not hook:
            self.distillation_step = None  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        raise AssertionError("training_step is not used while distilling")

    def distillation_step(self, batch, batch_idx, teacher_outputs):  # noqa: ANN001, ANN201
        self.steps.append(teacher_outputs)
        return F.mse_loss(self(batch[0]), teacher_outputs)

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_user_module_hook_receives_the_teachers_outputs() -> None:
    torch.manual_seed(0)
    teacher, student = UserModule(), UserModule()
    data = DataLoader(TensorDataset(torch.randn(24, 4), torch.zeros(24, dtype=torch.long)), batch_size=8)
    use_distillation_hook(student, Distillation(teacher))
    pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    ).fit(student, data)
    assert len(student.steps) == 3
    first = next(iter(data))[0]
    with torch.no_grad():
        assert torch.allclose(student.steps[0], teacher(first)) and not student.steps[0].requires_grad
    with pytest.raises(
        UserError,
        match=r"^finetune.distill: UserModule defines no distillation_step\(self, batch, batch_idx, teacher_outputs\)",
    ):
        use_distillation_hook(UserModule(hook=False), Distillation(teacher))
    with pytest.raises(
        UserError, match=r"^final_finetune.distill: UserModule defines no .*remove final_finetune.distill$"
    ):
        use_distillation_hook(UserModule(hook=False), Distillation(teacher, key="final_finetune.distill"))

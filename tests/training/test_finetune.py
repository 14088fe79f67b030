from __future__ import annotations

import torch

from prunetuna.training import evaluate_accuracy, fine_tune
from prunetuna.workload import TinyResNet, digits


def _train(seed: int, epochs: int = 2) -> tuple[float, list[float], list[tuple[int, float]]]:
    torch.manual_seed(0)
    model = TinyResNet(width=4)
    seen: list[tuple[int, float]] = []
    result = fine_tune(
        model,
        digits(batch_size=32),
        epochs=epochs,
        lr=0.01,
        seed=seed,
        max_batches=5,
        on_epoch=lambda e, a: seen.append((e, a)),
    )
    return result.accuracy, result.history, seen


def test_lightning_fine_tune_learns_and_reports_each_epoch() -> None:
    datamodule = digits(batch_size=32)
    torch.manual_seed(0)
    model = TinyResNet(width=4)
    before = evaluate_accuracy(model, datamodule.val_dataloader())
    result = fine_tune(model, datamodule, epochs=3, lr=0.01, seed=0, max_batches=20)
    assert len(result.history) == 3 and result.accuracy == result.history[-1]
    assert result.accuracy > before + 0.2, (before, result.history)
    assert result.accuracy == evaluate_accuracy(model, datamodule.val_dataloader())
    assert model.training  # left ready for more training, on the CPU
    assert next(model.parameters()).device.type == "cpu"


def test_deterministic_given_the_seed() -> None:
    first, second = _train(seed=3), _train(seed=3)
    assert first == second
    accuracy, history, seen = first
    assert [epoch for epoch, _ in seen] == [1, 2] and [a for _, a in seen] == history


def test_zero_epochs_only_evaluates() -> None:
    model = TinyResNet(width=4)
    weights = [p.clone() for p in model.parameters()]
    result = fine_tune(model, digits(), epochs=0, lr=0.01, seed=0)
    assert result.history == [] and 0.0 <= result.accuracy <= 1.0
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))


def test_batchnorm_recalibration_uses_the_batches() -> None:
    from prunetuna.training import recalibrate_batchnorm

    model = TinyResNet(width=4)
    batches = [torch.randn(16, 1, 8, 8) * 3 + 2 for _ in range(3)]
    assert recalibrate_batchnorm(model, batches) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    stem_bn = model.stem[1]
    with torch.no_grad():
        expected = model.stem[0](torch.cat(batches)).mean(dim=(0, 2, 3))
    assert torch.allclose(stem_bn.running_mean, expected, atol=1e-4)
    assert stem_bn.momentum == 0.1 and model.training

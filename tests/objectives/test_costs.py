from __future__ import annotations

import pytest
import torch
from torch import nn

from prunetuna.objectives import OBJECTIVES, count_flops, count_params, measure_costs, objective_values


def test_flops_of_a_known_layer() -> None:
    conv = nn.Conv2d(2, 3, kernel_size=3, padding=1, bias=False)
    # 3 output channels x 8x8 positions x (2 x 3 x 3) multiply-adds, 2 FLOPs each, for ONE input of the batch.
    assert count_flops(conv, torch.randn(5, 2, 8, 8)) == 2 * 3 * 64 * 18


def test_params_and_ratios() -> None:
    small, big = nn.Linear(4, 2), nn.Linear(4, 4)
    x = torch.randn(3, 4)
    assert count_params(small, x) == 10
    costs = measure_costs(small, x, dense=measure_costs(big, x))
    assert costs["params_ratio"] == pytest.approx(10 / 20)
    assert costs["flops_ratio"] == pytest.approx(0.5)


def test_objective_directions_and_values() -> None:
    assert OBJECTIVES["accuracy"].direction == "maximize"
    assert OBJECTIVES["flops"].direction == OBJECTIVES["params"].direction == "minimize"
    metrics = {"accuracy": 0.9, "flops": 10.0, "flops_ratio": 0.5, "params": 3.0, "params_ratio": 0.25}
    assert objective_values(["accuracy", "flops", "params"], metrics) == [0.9, 0.5, 0.25]

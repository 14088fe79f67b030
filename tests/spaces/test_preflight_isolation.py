"""The pre-flight check drops a group that breaks the model when pruned, names it, and searches the rest."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunetuna.errors import UserError
from prunetuna.spaces import PruningSpace, preflight


class FixedScale(nn.Module):
    """Multiplies by a buffer of a fixed width: torch-pruning does not know it; pruning its input breaks the model."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(1, width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _net(prunable: bool) -> nn.Module:
    layers = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()] if prunable else []
    layers += [
        nn.Conv2d(8 if prunable else 3, 16, 3, padding=1),
        FixedScale(16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ]
    return nn.Sequential(*layers)


def test_broken_group_is_dropped_with_a_warning_and_the_rest_searched(capsys: pytest.CaptureFixture[str]) -> None:
    space = PruningSpace.from_model(_net(True), torch.randn(2, 3, 8, 8), max_sparsity=0.5, step=0.25)
    assert space.names == ["0", "2"]
    kept, broken = preflight(space, label="net")
    assert kept.names == ["0"] and [b.dimension.name for b in broken] == ["2"]
    err = capsys.readouterr().err
    assert "sparsity.2 (layer 2 (Conv2d)" in err and "dropped from the search space" in err and "pruning.ignore" in err
    assert kept.apply({"0": 0.5})(torch.randn(1, 3, 8, 8)).shape == (1, 4)


def test_nothing_left_names_the_culprit_and_says_masks_give_no_speedup() -> None:
    space = PruningSpace.from_model(_net(False), torch.randn(2, 3, 8, 8), max_sparsity=0.5, step=0.25)
    with pytest.raises(UserError, match=r"sparsity\.0, layer 0 \(Conv2d\).*no speedup"):
        preflight(space, label="net")

"""torch-pruning's global ranking of a space's channels: the ``global`` baseline allocation."""

from __future__ import annotations

import copy
from typing import Protocol, Sequence

import torch_pruning as tp
from torch import nn

from prunetuna.spaces._attention import fix_widths, head_counts
from prunetuna.spaces._dimensions import ROOT_TYPES, Dimension
from prunetuna.spaces._graph import indexed_groups
from prunetuna.spaces._importance import make_importance
from prunetuna.spaces._methods import Batches, accumulate_gradients, quiet_copies
from prunetuna.spaces.rewrites import opaque_for_tracing, opaque_ops
from prunetuna.sparsity import SparsityVector

__all__ = ["global_allocation"]


class _Space(Protocol):
    """What the global ranking reads of a ``PruningSpace``."""

    model: nn.Module
    example: object
    importance: str
    max_sparsity: float
    ignored: Sequence[str]
    round_to: int | None
    dimensions: Sequence[Dimension]

    def high(self, dimension: Dimension) -> float: ...


def global_allocation(space: _Space, ratio: float, batches: Batches = ()) -> SparsityVector:
    """The per-dimension ratios that torch-pruning's global ranking reaches at ``ratio`` (not snapped)."""
    pruned = copy.deepcopy(space.model)
    before = _root_channels(pruned)
    modules = dict(pruned.named_modules())
    accumulate_gradients(pruned, space.importance, batches)
    pruned.eval()
    with quiet_copies(), opaque_for_tracing(pruned), indexed_groups():
        pruner = tp.pruner.MetaPruner(
            pruned,
            space.example[:1].to(next(pruned.parameters()).device),
            importance=make_importance(space.importance),
            pruning_ratio=ratio,
            global_pruning=True,
            max_pruning_ratio=space.max_sparsity,
            ignored_layers=[modules[n] for n in space.ignored],
            root_module_types=list(ROOT_TYPES),
            round_to=space.round_to,
            num_heads=head_counts(pruned),
        )
    pruner.ignored_layers.extend(opaque_ops(pruner.DG))  # groups through hidden attention keep their widths
    with indexed_groups():
        pruner.step()
    after = _root_channels(fix_widths(pruned))
    vector = {}
    for d in space.dimensions:
        total = sum(before[r] for r in d.roots)
        kept = sum(after[r] for r in d.roots)
        vector[d.name] = min(1.0 - kept / total, space.high(d)) if total else 0.0
    return vector


def _root_channels(model: nn.Module) -> dict[str, int]:
    return {
        n: (m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features)
        for n, m in model.named_modules()
        if isinstance(m, ROOT_TYPES)
    }

"""timm's edge-era attention blocks, hidden from torch-pruning's trace by module type.

These blocks split a projection into heads, queries, keys and values with reshapes, fixed-width ``split``
calls or per-head lists that torch-pruning 1.6 cannot map: pruning through them either breaks the forward
(``split_with_sizes expects split_sizes to sum exactly to ...`` in MobileViTv2's linear attention, index errors in
LeViT's, MobileNetV4's and EfficientViT's) or its index mapping loops through their reshapes, doubling the indices
at every pass, until building the graph takes minutes and gigabytes (EfficientViT-MSRA, EfficientFormerV2). Hidden,
each is one op to the trace: its inner layers and the channels it reads and writes keep their widths, and the rest
of the model (convolutions, MLPs, downsampling) is searched.

A module is considered only when its class comes from the ``timm`` package; only then is timm imported (lazily,
once) to check ``isinstance`` against the classes of :data:`OPAQUE`, so a model of any other library never imports
it. Classes a timm version lacks are skipped.
"""

from __future__ import annotations

import functools
import importlib

from torch import nn

__all__ = ["OPAQUE", "is_opaque"]

OPAQUE: tuple[tuple[str, str], ...] = (
    ("timm.models.mobilevit", "LinearSelfAttention"),  # MobileViTv2: qkv split by fixed widths [1, d, d]
    ("timm.models.efficientvit_mit", "LiteMLA"),  # EfficientViT (MIT): multi-scale linear attention
    ("timm.models.efficientvit_msra", "CascadedGroupAttention"),  # EfficientViT (MSRA): per-head list of qkv
    ("timm.models.efficientformer_v2", "Attention2d"),
    ("timm.models.efficientformer_v2", "Attention2dDownsample"),
    ("timm.models.levit", "Attention"),
    ("timm.models.levit", "AttentionDownsample"),
    ("timm.layers.attention2d", "MultiQueryAttention2d"),  # MobileNetV4 hybrid
    ("timm.layers.attention2d", "MultiQueryAttentionV2"),
)
"""(module, class) of every timm block hidden from the trace."""


def _from_timm(module: nn.Module) -> bool:
    return any(k.__module__.startswith("timm.") for k in type(module).__mro__)


@functools.lru_cache(maxsize=1)
def _classes() -> tuple[type, ...]:
    found = []
    for where, name in OPAQUE:
        try:
            found.append(getattr(importlib.import_module(where), name))
        except (ImportError, AttributeError):  # not in this timm version, or no timm
            continue
    return tuple(found)


def is_opaque(module: nn.Module) -> bool:
    """Whether torch-pruning's trace should see ``module`` as one op (a timm attention block it cannot map)."""
    return _from_timm(module) and isinstance(module, _classes())

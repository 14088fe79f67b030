"""Attention and vision-transformer support: head counts for torch-pruning, width attributes fixed after pruning.

Attention layers split their width into heads; torch-pruning prunes the same number of channels in
every head when it is told the head count (``num_heads``), so head widths are a dimension like any
other. Modules that cache a width in an attribute and use it in ``forward`` (``reshape(B, N, 3,
self.num_heads, self.head_dim)``, ``reshape(n, self.hidden_dim, ...)``) would break once pruned: each
family in :data:`WIDTH_FIXERS` recognises such a module by its layers and attributes (no import of
torchvision or timm) and updates the attributes from the pruned layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from prunetuna.registry import Registry

__all__ = ["WIDTH_FIXERS", "WidthFixer", "fix_widths", "head_counts"]


def _is_timm_attention(m: nn.Module) -> bool:
    """timm's ``Attention`` (and look-alikes): a fused ``qkv`` Linear, ``num_heads`` and ``head_dim`` read in
    forward."""
    return (
        isinstance(getattr(m, "qkv", None), nn.Linear)
        and isinstance(getattr(m, "num_heads", None), int)
        and isinstance(getattr(m, "head_dim", None), int)
    )


def _fix_timm_attention(m: nn.Module) -> None:
    m.head_dim = m.qkv.out_features // (3 * m.num_heads)
    if hasattr(m, "attn_dim"):
        m.attn_dim = m.num_heads * m.head_dim
    if hasattr(m, "scale"):
        m.scale = m.head_dim**-0.5


def _is_torchvision_vit(m: nn.Module) -> bool:
    """torchvision's ``VisionTransformer``: ``conv_proj`` patch embedding and ``hidden_dim`` read in
    ``_process_input``."""
    return isinstance(getattr(m, "conv_proj", None), nn.Conv2d) and isinstance(getattr(m, "hidden_dim", None), int)


def _fix_torchvision_vit(m: nn.Module) -> None:
    m.hidden_dim = m.conv_proj.out_channels


def _is_timm_vit(m: nn.Module) -> bool:
    """timm's ``VisionTransformer`` family: ``patch_embed.proj`` and the cached ``embed_dim`` / ``num_features``."""
    proj = getattr(getattr(m, "patch_embed", None), "proj", None)
    return isinstance(proj, nn.Conv2d) and isinstance(getattr(m, "embed_dim", None), int)


def _fix_timm_vit(m: nn.Module) -> None:
    old, width = m.embed_dim, m.patch_embed.proj.out_channels
    for name in ("embed_dim", "num_features", "head_hidden_size"):
        if getattr(m, name, None) == old:
            setattr(m, name, width)


@dataclass(frozen=True)
class WidthFixer:
    """``matches`` recognises a module; ``heads`` is the layer torch-pruning splits into heads and its head count
    (None for modules without heads); ``fix`` updates the module's cached widths after pruning."""

    matches: Callable[[nn.Module], bool]
    fix: Callable[[nn.Module], None]
    heads: Callable[[nn.Module], tuple[nn.Module, int]] | None = None


WIDTH_FIXERS: Registry[WidthFixer] = Registry("width fixer")
# torch-pruning's own MultiheadAttention pruner updates embed_dim and head_dim; it needs the head count.
WIDTH_FIXERS.register(
    "torch.nn.MultiheadAttention",
    WidthFixer(lambda m: isinstance(m, nn.MultiheadAttention), lambda m: None, lambda m: (m, m.num_heads)),
)
WIDTH_FIXERS.register(
    "timm Attention", WidthFixer(_is_timm_attention, _fix_timm_attention, lambda m: (m.qkv, m.num_heads))
)
WIDTH_FIXERS.register("torchvision VisionTransformer", WidthFixer(_is_torchvision_vit, _fix_torchvision_vit))
WIDTH_FIXERS.register("timm VisionTransformer", WidthFixer(_is_timm_vit, _fix_timm_vit))


def head_counts(model: nn.Module) -> dict[nn.Module, int]:
    """torch-pruning's ``num_heads`` argument: each attention layer of ``model`` and its head count."""
    counts: dict[nn.Module, int] = {}
    for module in model.modules():
        for fixer in WIDTH_FIXERS.values():
            if fixer.heads is not None and fixer.matches(module):
                layer, heads = fixer.heads(module)
                counts[layer] = heads
    return counts


def fix_widths(model: nn.Module) -> nn.Module:
    """Update the cached width attributes of every recognised module of a pruned ``model`` (in place)."""
    for module in model.modules():
        for fixer in WIDTH_FIXERS.values():
            if fixer.matches(module):
                fixer.fix(module)
    return model

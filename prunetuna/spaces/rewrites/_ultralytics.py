"""ultralytics YOLO models (v8, 11; detection, segmentation, pose, OBB): rewrites, fixed head layers, opaque attention.

Everything is found by module type: a module is considered only when its class comes from the
``ultralytics`` package, and only then is ultralytics imported (lazily, once) to check ``isinstance``
against its classes; a model of any other library never imports it.

- C2f-style blocks (``C2f``, ``C3k2``, ``C2fCIB``...: any ``C2f`` that keeps ``C2f.forward``) and ``C2PSA``
  chunk one convolution's output: rewritten with two convolutions (:mod:`._split`).
- Heads (``Detect`` and its subclasses): the last layer of every prediction branch, the DFL convolution
  and the mask prototypes' last layer keep their widths (box, class, mask-coefficient and prototype counts).
- ``Attention`` (in ``C2PSA``, ``C3k2`` with attention) and ``AAttn`` reshape channels into heads; torch-pruning
  cannot map those reshapes (its index mapping loops through them, doubling the indices at every pass),
  so they are hidden from its trace and the channels they read and write are not pruned.
- The eval output carries the head's input feature maps (``feats``) next to the predictions: they are
  intermediate tensors whose width pruning may change, so checks compare the predictions only.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Iterator

from torch import nn

from prunetuna.spaces.rewrites._split import SplitC2f, SplitC2PSA, split_input

__all__ = ["fixed", "is_opaque", "predictions", "rewrite"]

_ROOTS = (nn.modules.conv._ConvNd, nn.Linear)


def _from_ultralytics(module: nn.Module) -> bool:
    return any(k.__module__.startswith("ultralytics.") for k in type(module).__mro__)


@functools.lru_cache(maxsize=1)
def _classes() -> SimpleNamespace | None:
    try:
        from ultralytics.nn.modules import block, head
    except ImportError:  # a class named like ultralytics' without the package: nothing to do
        return None
    return SimpleNamespace(
        C2f=block.C2f,
        C2PSA=getattr(block, "C2PSA", None),
        Detect=head.Detect,
        attention=tuple(c for c in (getattr(block, "Attention", None), getattr(block, "AAttn", None)) if c is not None),
    )


def _ultralytics(module: nn.Module) -> SimpleNamespace | None:
    return _classes() if _from_ultralytics(module) else None


def rewrite(module: nn.Module) -> nn.Module | None:
    """The prunable equivalent of ``module``, or None to keep it."""
    classes = _ultralytics(module)
    if classes is None:
        return None
    if isinstance(module, classes.C2f) and type(module).forward is classes.C2f.forward:
        half = module.cv1.conv.out_channels // 2 if hasattr(module.cv1, "conv") else None
        if not half or not isinstance(module.m, nn.ModuleList):
            return None
        return split_input(module, SplitC2f, (half, half))
    c2psa = classes.C2PSA
    if c2psa is not None and isinstance(module, c2psa) and type(module).forward is c2psa.forward:
        return split_input(module, SplitC2PSA, (module.c, module.c))
    return None


def _last_layer(module: nn.Module) -> nn.Module | None:
    layers = [m for m in module.modules() if isinstance(m, _ROOTS)]
    return layers[-1] if layers else None


def fixed(module: nn.Module) -> Iterator[nn.Module]:
    """The layers of a head ``module`` whose output widths the predictions depend on (none for other modules)."""
    classes = _ultralytics(module)
    if classes is None or not isinstance(module, classes.Detect):
        return
    for child in module.children():
        branches = list(child) if isinstance(child, nn.ModuleList) else [child]
        for branch in branches:
            last = _last_layer(branch)
            if last is not None:
                yield last


def is_opaque(module: nn.Module) -> bool:
    """Whether torch-pruning's trace should see ``module`` as one op (attention that reshapes channels into heads)."""
    classes = _ultralytics(module)
    return classes is not None and bool(classes.attention) and isinstance(module, classes.attention)


def predictions(model: nn.Module, output: object) -> object | None:
    """``output`` without the head's input feature maps (``feats``) if ``model`` has an ultralytics head; else None."""
    classes = _classes() if any(_from_ultralytics(m) for m in model.modules()) else None
    if classes is None or not any(isinstance(m, classes.Detect) for m in model.modules()):
        return None
    return _without_feats(output)


def _without_feats(output: object) -> object:
    if isinstance(output, dict):
        return {k: _without_feats(v) for k, v in output.items() if k != "feats"}
    if isinstance(output, (tuple, list)):
        return [_without_feats(v) for v in output] if isinstance(output, list) else tuple(map(_without_feats, output))
    return output

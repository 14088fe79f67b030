"""Model rewrites and per-family rules that let torch-pruning prune architectures it mis-handles.

Each :class:`Family` in :data:`FAMILIES` recognises modules by type and says:

- ``rewrite``: an equivalent module torch-pruning maps right (same outputs, loads the original state dict);
- ``fixed``: layers whose output widths the model's outputs depend on (a detection head's predictions);
- ``opaque``: modules its trace should see as one op (attention that reshapes channels into heads);
- ``predictions``: the part of a model's output that checks compare (without intermediate feature maps).

:func:`prepare_for_pruning` applies the rewrites. :meth:`prunetuna.spaces.PruningSpace.from_model` calls it on
the model it is given, so every path that builds a space (search, ``export``, ``load_pruned``, rebuilding a
trial) prunes, names and loads the same rewritten structure; code that builds a pruned model without a space
must call it before loading weights logged by a search.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from torch import nn
from torch.utils.checkpoint import checkpoint

from prunetuna.registry import Registry
from prunetuna.spaces.rewrites import _timm, _ultralytics
from prunetuna.spaces.rewrites._split import SplitC2f, SplitC2PSA, restore_stock, split_block

__all__ = [
    "FAMILIES",
    "Family",
    "SplitC2PSA",
    "SplitC2f",
    "fixed_layers",
    "model_predictions",
    "opaque_for_tracing",
    "opaque_ops",
    "prepare_for_pruning",
    "restore_stock",
    "split_block",
]


@dataclass(frozen=True)
class Family:
    """Rules for one model family; each callable sees one module (``predictions``: the model and its output)."""

    rewrite: Callable[[nn.Module], nn.Module | None] = lambda module: None
    fixed: Callable[[nn.Module], Iterable[nn.Module]] = lambda module: ()
    opaque: Callable[[nn.Module], bool] = lambda module: False
    predictions: Callable[[nn.Module, object], object | None] = lambda model, output: None


FAMILIES: Registry[Family] = Registry("model family")
FAMILIES.register(
    "ultralytics", Family(_ultralytics.rewrite, _ultralytics.fixed, _ultralytics.is_opaque, _ultralytics.predictions)
)
FAMILIES.register("timm", Family(opaque=_timm.is_opaque))


def _rewritten(module: nn.Module) -> nn.Module | None:
    for family in FAMILIES.values():
        new = family.rewrite(module)
        if new is not None:
            return new
    return None


def prepare_for_pruning(model: nn.Module) -> nn.Module:
    """``model`` with every module a family rewrites replaced in place (idempotent: rewritten modules match no rule).

    The outputs stay the same, and the model still loads state dicts saved before the rewrite; state dicts
    saved after it (every pruned candidate's) name the rewritten layers and need it applied first.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = _rewritten(child)
            if new is not None:
                setattr(parent, name, new)
    return model


def fixed_layers(model: nn.Module) -> list[str]:
    """Names of the layers whose output widths the model's outputs depend on, by module type (a detection head's
    prediction layers, its fixed DFL projection, its mask prototypes): never pruned."""
    names = {module: name for name, module in model.named_modules()}
    found = [
        names[layer]
        for module in model.modules()
        for family in FAMILIES.values()
        for layer in family.fixed(module)
        if layer in names
    ]
    return list(dict.fromkeys(found))


def model_predictions(model: nn.Module, output: object) -> object:
    """The part of ``output`` that checks compare between the dense and a pruned model."""
    for family in FAMILIES.values():
        kept = family.predictions(model, output)
        if kept is not None:
            return kept
    return output


OPAQUE_OP = "CheckpointFunctionBackward"
"""The autograd node name of a module hidden by :func:`opaque_for_tracing`, as torch-pruning's graph records it."""


@contextlib.contextmanager
def opaque_for_tracing(model: nn.Module) -> Iterator[int]:
    """While active, every module a family marks ``opaque`` runs through a reentrant checkpoint: autograd (which
    torch-pruning's trace walks) sees one node for it, inputs to outputs, instead of its reshapes into heads. The
    outputs are the same; yields how many modules were hidden. Their graph nodes are named :data:`OPAQUE_OP`."""
    hidden = [m for m in model.modules() if any(family.opaque(m) for family in FAMILIES.values())]
    own = {module: vars(module).get("forward") for module in hidden}
    for module in hidden:
        forward = module.forward
        module.forward = lambda *args, _forward=forward: checkpoint(_forward, *args, use_reentrant=True)
    try:
        yield len(hidden)
    finally:
        for module, forward in own.items():
            if forward is None:
                del module.forward
            else:
                module.forward = forward


def opaque_ops(graph: object) -> list[nn.Module]:
    """The op nodes of torch-pruning's ``graph`` that stand for hidden modules: ignored, so that no group prunes
    the channels a hidden module reads or writes (its inner layers are not in the graph and would keep their widths)."""
    return [
        module
        for module, node in graph.module2node.items()  # type: ignore[attr-defined]
        if OPAQUE_OP in type(getattr(node, "grad_fn", None)).__name__
    ]

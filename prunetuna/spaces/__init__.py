"""What can be pruned and how a sample becomes a pruned model.

Dimensions are torch-pruning dependency groups (channels coupled through adds or concats
form one group), named after the group's root layer. A :data:`SparsityVector` maps each
dimension name to a ratio; :meth:`PruningSpace.apply` removes that share of channels from a
copy of the dense model. Before its graph is built, the model is rewritten in place where torch-pruning
mis-handles a block (:func:`prepare_for_pruning`, :mod:`prunetuna.spaces.rewrites`).
"""

from __future__ import annotations

from prunetuna.spaces._attention import WIDTH_FIXERS, WidthFixer, fix_widths, head_counts
from prunetuna.spaces._dimensions import Dimension, find_output_layer
from prunetuna.spaces._graph import GraphCost, GraphLimits, GraphTooExpensive
from prunetuna.spaces._importance import IMPORTANCES, NEEDS_GRADIENTS, make_importance
from prunetuna.spaces._masks import make_permanent, nm_mask
from prunetuna.spaces._methods import METHODS, PruningMethod
from prunetuna.spaces._preflight import BrokenDimension, preflight
from prunetuna.spaces._ratio_scale import SCALES, sampler_params
from prunetuna.spaces._space import Batches, Granularity, PruningSpace, SparsityVector
from prunetuna.spaces._tie import tie_dimensions
from prunetuna.spaces.rewrites import FAMILIES, Family, prepare_for_pruning

__all__ = [
    "IMPORTANCES",
    "METHODS",
    "SCALES",
    "NEEDS_GRADIENTS",
    "Batches",
    "BrokenDimension",
    "Dimension",
    "FAMILIES",
    "Family",
    "GraphCost",
    "GraphLimits",
    "GraphTooExpensive",
    "Granularity",
    "WIDTH_FIXERS",
    "WidthFixer",
    "fix_widths",
    "head_counts",
    "PruningMethod",
    "PruningSpace",
    "SparsityVector",
    "find_output_layer",
    "make_importance",
    "make_permanent",
    "nm_mask",
    "preflight",
    "prepare_for_pruning",
    "sampler_params",
    "tie_dimensions",
]

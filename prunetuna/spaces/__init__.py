"""What can be pruned and how a sample becomes a pruned model.

Dimensions are torch-pruning dependency groups (channels coupled through adds or concats
form one group), named after the group's root layer. A :data:`SparsityVector` maps each
dimension name to a ratio; :meth:`PruningSpace.apply` removes that share of channels from a
copy of the dense model.
"""

from __future__ import annotations

from prunetuna.spaces._importance import IMPORTANCES, NEEDS_GRADIENTS, make_importance
from prunetuna.spaces._masks import MASK_METHODS, make_permanent, nm_mask
from prunetuna.spaces._space import Batches, Dimension, Granularity, PruningSpace, SparsityVector, find_output_layer, tie_dimensions

__all__ = [
    "IMPORTANCES",
    "MASK_METHODS",
    "NEEDS_GRADIENTS",
    "Batches",
    "Dimension",
    "Granularity",
    "PruningSpace",
    "SparsityVector",
    "find_output_layer",
    "make_importance",
    "make_permanent",
    "nm_mask",
    "tie_dimensions",
]

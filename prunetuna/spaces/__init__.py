"""What can be pruned and how a sample becomes a pruned model.

Dimensions are torch-pruning dependency groups (channels coupled through adds or concats form one
group), named after the group's root layer. A sparsity vector maps each dimension name to a ratio;
``PruningSpace.apply`` removes that share of channels from a copy of the dense model.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "rewrites": ("FAMILIES", "Family", "prepare_for_pruning", "restore_stock"),
    "_attention": ("WIDTH_FIXERS", "WidthFixer", "fix_widths", "head_counts"),
    "_dimensions": (
        "Dimension",
        "ROOT_TYPES",
        "find_dimensions",
        "find_output_layer",
        "find_output_layers",
        "ignored_layers",
        "output_tensors",
    ),
    "_global": ("global_allocation",),
    "_graph": (
        "GraphCost",
        "GraphLimits",
        "GraphTooExpensive",
        "copy_with_graph",
        "graph_and_groups",
        "guarded",
        "indexed_groups",
        "last_graph_cost",
        "measured",
        "model_label",
        "reusing",
        "take_graph",
    ),
    "_importance": ("IMPORTANCES", "NEEDS_GRADIENTS", "make_importance"),
    "_masks": ("make_permanent", "mask_nm", "mask_unstructured", "nm_mask"),
    "_methods": (
        "Batches",
        "METHODS",
        "PruningMethod",
        "SpaceSettings",
        "accumulate_gradients",
        "outside_groups",
        "quiet_copies",
    ),
    "_preflight": ("BrokenDimension", "preflight"),
    "_ratio_scale": ("SCALES", "sampler_params", "suggest_ratios"),
    "_space": (
        "Batches",
        "Dimension",
        "Granularity",
        "PruningSpace",
        "SparsityVector",
        "find_output_layer",
        "tie_dimensions",
    ),
    "_tie": ("Granularity", "tie_dimensions"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

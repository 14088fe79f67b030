"""prunetuna: per-layer pruning ratios searched with Optuna, fine-tuned with Lightning, tracked in MLflow."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "load_pruned"]


def load_pruned(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - see prunetuna.export.load_pruned
    """A pruned, fine-tuned model: ``load_pruned("model.pt")`` or ``load_pruned("experiment.yaml", trial=12)``."""
    from prunetuna.export import load_pruned as _load_pruned

    return _load_pruned(*args, **kwargs)

"""prunetuna: per-layer pruning ratios searched with Optuna, fine-tuned with Lightning, tracked in MLflow."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]

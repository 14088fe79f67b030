"""What a search works on: the model and data built from the config (built-ins, a user's targets, image
datasets read from disk) and the dense baseline every trial is compared with.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_baseline": ("DenseBaseline", "baseline_key", "prepare_baseline"),
    "_build": (
        "Workload",
        "build_datamodule",
        "build_model",
        "first_inputs",
        "import_target",
        "load_checkpoint",
        "load_workload",
    ),
    "_builtin_data": ("BUILTIN_DATA", "TensorDataModule", "digits", "mnist_5k_arrays", "register_data"),
    "_builtin_models": ("BUILTIN_MODELS", "BasicBlock", "TinyResNet", "register_model"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

"""A chosen trial rebuilt, re-checked and written (ONNX, TorchScript, ``pt``), the one rebuild path every
verb uses, the chosen trial's final fine-tune (``prunetuna finetune``), and the MLflow Model Registry flavours.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_checks": ("ExportCheckFailed", "OutputCheck", "compare_leaves", "compare_outputs"),
    "_export": ("METRIC_TOLERANCE", "ExportedTrial", "export_trial", "load_pruned"),
    "_formats": ("EXPORTERS", "Exporter", "load_pruned_file", "trace_model"),
    "_final_finetune": ("FinalFinetune", "final_finetune"),
    "_finetuned": ("FinishedFinetune", "find_finetune_runs", "finetune_key", "finished_finetune"),
    "_model_registry": ("FLAVORS", "RegisteredVersion", "check_model_name", "register_export"),
    "_rebuild": ("RebuiltTrial", "rebuild_model", "rebuild_trial", "removed_weights", "select_trial"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

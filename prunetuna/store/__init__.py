"""Where a study lives: Optuna storage, the MLflow tracking writer (with outage retries), the durable local
record of a finished trial, the parent run, repair at start, which trials keep their weights
(``search.keep_weights``), the typed trial and study records, and the keys (states, tags, roles) they are written
under.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_durable": ("FinalRecord", "TrialStore"),
    "_manifest": ("config_hash", "git_commit", "manifest", "package_versions", "study_manifest"),
    "_mlflow_client": ("STORE_CREATION_WAIT_S", "open_client", "probe_server"),
    "_outage": ("Outage", "TrackingAway", "lost_insert_race", "transient"),
    "_parent": (
        "PARENT_BEAT_S",
        "PARENT_SILENCE_S",
        "PARENT_STALE_S",
        "CreatorWatch",
        "coordinate_parent",
        "creator_beat",
    ),
    "_parent_run": ("Candidate", "Election", "ParentRuns", "elect"),
    "_reconcile": ("Reconciled", "close_finished_parent", "reconcile", "trial_runs"),
    "_records": (
        "Role",
        "RunStatus",
        "Tag",
        "TrialEnd",
        "WeightsMark",
        "APPLIED_ATTR",
        "BudgetStatus",
        "StudyRecord",
        "TrialRecord",
        "enqueue_attrs",
        "set_study_fields",
        "write_study",
        "write_stored_trial",
        "write_trial",
    ),
    "_storage": (
        "Workspace",
        "describe_error",
        "load_study",
        "mask_text",
        "mask_url",
        "open_storage",
        "resolve_workspace",
        "sqlite_creation_lock",
        "sqlite_path",
    ),
    "_tracking": ("MANIFEST_FILE", "StudyTracker", "WEIGHTS_FILE"),
    "_weights": ("Drop", "WeightsKeeper", "off_front", "weights_removed", "weights_to_drop"),
    "_writer": ("CANDIDATES_FILE", "TrialModel", "TrialOutcome", "TrialWriter"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

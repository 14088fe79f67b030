"""What a user reads back: the report (table and ``--json``), the MLflow summary and views, plots, and the UI."""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_mlflow_summary": (
        "DrawnStudy",
        "NOTE_TAG",
        "PARETO_TABLE",
        "VIEW_KEY",
        "VIEW_TAG",
        "landing_url",
        "landing_view",
        "publish_summary",
        "publish_view",
        "trial_description",
    ),
    "_plots": ("history_plot", "pareto_plot", "profile_plot", "save_figure", "save_study_plots", "sensitivity_plot"),
    "_report": (
        "BaselineGain",
        "ReportTrial",
        "SLOW_FOR_FLOPS",
        "StudyReport",
        "build_report",
        "gain_lines",
        "render_report",
    ),
    "_ui": ("DASHBOARD_MISSING", "StudyLinks", "objective_names", "prepare_links", "serve"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

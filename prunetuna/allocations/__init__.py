"""Allocations a user could get without a search: the per-layer sensitivity scan, the bounds it implies,
and the sensitivity-threshold allocation (FastNAS / AIMET) fitted to a cost level.
"""

from __future__ import annotations

from prunetuna.runtime import lazy_exports

_HOMES = {
    "_sensitivity": (
        "ScanProgress",
        "SensitivityScan",
        "bounds_from_scan",
        "cache_path",
        "cached_scan",
        "scan_grid",
        "scan_sensitivity",
    ),
    "_threshold": ("ThresholdAllocation", "ThresholdFit", "fit_threshold"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

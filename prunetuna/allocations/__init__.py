"""Allocations a user could get without a search: the per-layer sensitivity scan and the bounds and
baselines derived from it.
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
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)

"""The one grid snap: nearest or up, capped, in canonical form."""

from __future__ import annotations

from prunetuna.sparsity import snap


def test_snap_nearest_up_and_capped() -> None:
    assert snap(0.7000000000000001, 0.05) == 0.7
    assert snap(0.62, 0.25) == 0.5 and snap(0.62, 0.25, up=True) == 0.75
    assert snap(0.5 + 1e-12, 0.25, up=True) == 0.5, "a float spelling of a grid point stays on it"
    assert snap(0.9, 0.25, up=True, high=0.8) == 0.8
    assert snap(3 * 0.1, 0.1, up=True) == 0.3

from __future__ import annotations

import optuna
import torch
from torch import nn

from prunetuna.objectives import CACHE_CONFIRMATIONS, CACHE_SAMPLES, PREFIX, LatencyCache


def test_an_outlier_first_measurement_is_outvoted_before_the_entry_is_served() -> None:
    # The measurement is what is injected: a machine busy during the first one (2 ms), quiet after (1.0, 1.1).
    readings = iter([2.0, 1.0, 1.1])
    taken = []

    def measure() -> dict[str, float]:
        taken.append(next(readings))
        return {"latency_ms": taken[-1], "latency_spread": 0.01}

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    cache = LatencyCache({"backend": "onnxruntime", "batch_size": 1}, {"where": "this machine"})
    cache.attach(study)
    model, example = nn.Conv2d(3, 4, 3), torch.zeros(1, 3, 8, 8)
    seen = [cache.measure(model, example, measure) for _ in range(CACHE_CONFIRMATIONS + 2)]
    assert taken == [2.0, 1.0, 1.1], "the first CACHE_CONFIRMATIONS uses measure, later ones do not"
    assert [m["latency_ms"] for m in seen] == [2.0, 1.0, 1.1, 1.1, 1.1]  # the lower median of the samples so far
    assert [m["latency_cached"] for m in seen] == [0.0, 0.0, 0.0, 1.0, 1.0]
    (entry,) = [v for k, v in study.user_attrs.items() if k.startswith(PREFIX)]
    assert [s["latency_ms"] for s in entry[CACHE_SAMPLES]] == [2.0, 1.0, 1.1]
    # an entry an earlier version wrote (one measurement, no samples) is confirmed on its next uses
    key = next(k for k in study.user_attrs if k.startswith(PREFIX))
    study.set_user_attr(key, {"latency_ms": 3.0, "latency_spread": 0.01})
    readings = iter([1.2, 1.0])
    again = [cache.measure(model, example, measure)["latency_ms"] for _ in range(3)]
    assert again == [1.2, 1.2, 1.2] and taken[-2:] == [1.2, 1.0]

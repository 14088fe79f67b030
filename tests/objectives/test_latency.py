from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from prunetuna.objectives import LATENCY_BACKENDS, LatencySettings, export_onnx, measure_latency
from prunetuna.workload import TinyResNet

EXAMPLE = torch.randn(4, 1, 28, 28)


@pytest.mark.parametrize("backend", sorted(b for b in LATENCY_BACKENDS if b != "remote"))  # remote: tests/device
def test_every_backend_measures_a_median(backend: str) -> None:
    model = TinyResNet(width=8)
    settings = LatencySettings(backend=backend, batch_size=3, threads=1, warmup=2, repeats=15, max_ci=10.0)
    result = measure_latency(model, EXAMPLE, settings)
    assert result.median_ms > 0 and result.spread >= 0
    assert result.attempts == 1 and 0 <= result.ci  # an interval under max_ci needs no second attempt
    assert model.training, "the model's mode is restored"
    assert torch.get_num_threads() >= 1


def test_wide_interval_is_measured_again() -> None:
    settings = LatencySettings(warmup=0, repeats=5, max_ci=1e-9, attempts=3)
    result = measure_latency(TinyResNet(width=4), EXAMPLE, settings)
    assert result.attempts == 3


def test_smaller_model_is_faster() -> None:
    settings = LatencySettings(backend="torch", batch_size=16, repeats=20)
    wide = measure_latency(TinyResNet(width=32), EXAMPLE, settings).median_ms
    narrow = measure_latency(TinyResNet(width=4), EXAMPLE, settings).median_ms
    assert narrow < wide


def test_onnx_export_matches_torch() -> None:
    model = TinyResNet(width=8).eval()
    session = ort.InferenceSession(export_onnx(model, EXAMPLE[:1]), providers=["CPUExecutionProvider"])
    batch = EXAMPLE[:3]
    (got,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
    with torch.no_grad():
        expected = model(batch).numpy()
    assert np.abs(got - expected).max() <= 1e-4


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown latency backend 'tvm'"):
        LatencySettings(backend="tvm")
    with pytest.raises(ValueError, match="repeats"):
        LatencySettings(repeats=0)

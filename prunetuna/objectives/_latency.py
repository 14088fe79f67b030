"""Measured latency of a model on this machine, with backends by name (torch eager, onnxruntime).

On a shared, noisy machine one timing is not a figure: threads are fixed, the model is warmed up,
many repeats are taken and the median kept; the relative spread (p90 - p10) / median is reported,
and a measurement whose spread is too wide is taken again (the tightest one is kept).
"""

from __future__ import annotations

import io
import statistics
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

__all__ = ["LATENCY_BACKENDS", "LatencyResult", "LatencySettings", "export_onnx", "measure_latency"]


@dataclass(frozen=True)
class LatencySettings:
    backend: str = "torch"
    batch_size: int = 1
    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    max_spread: float = 0.15
    attempts: int = 3

    def __post_init__(self) -> None:
        if self.backend not in LATENCY_BACKENDS:
            raise ValueError(f"unknown latency backend {self.backend!r}; choose one of {', '.join(LATENCY_BACKENDS)}")
        for name in ("batch_size", "threads", "repeats", "attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"latency.{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.max_spread <= 0:
            raise ValueError(f"latency.warmup must be >= 0 and latency.max_spread > 0, got {self.warmup}, {self.max_spread}")


@dataclass(frozen=True)
class LatencyResult:
    """Median milliseconds per batch, relative spread of the kept attempt, and how many attempts it took."""

    median_ms: float
    spread: float
    attempts: int
    seconds: float


Runner = Callable[[], object]
"""Runs the model once on the prepared batch."""


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _torch_runner(model: nn.Module, batch: torch.Tensor, threads: int) -> Runner:
    model.eval()

    def run() -> object:
        with torch.inference_mode():
            return model(batch)

    return run


def export_onnx(model: nn.Module, batch: torch.Tensor) -> bytes:
    """The model as ONNX bytes (TorchScript-based exporter: a fraction of a second for small CNNs)."""
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (batch,), buffer, dynamo=False, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return buffer.getvalue()


def _onnxruntime_runner(model: nn.Module, batch: torch.Tensor, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(export_onnx(model, batch), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch.numpy()}
    return lambda: session.run(None, feed)


LATENCY_BACKENDS: dict[str, Callable[[nn.Module, torch.Tensor, int], Runner]] = {
    "torch": _torch_runner,
    "onnxruntime": _onnxruntime_runner,
}


def _spread(times: list[float]) -> float:
    ordered = sorted(times)
    p10 = ordered[int(0.1 * (len(ordered) - 1))]
    p90 = ordered[int(round(0.9 * (len(ordered) - 1)))]
    median = statistics.median(ordered)
    return (p90 - p10) / median if median > 0 else 0.0


def measure_latency(model: nn.Module, example: torch.Tensor, settings: LatencySettings) -> LatencyResult:
    """Median latency of one batch of ``settings.batch_size`` inputs (repeated from ``example``) on the CPU."""
    start = time.perf_counter()
    was_training = model.training
    device = next(model.parameters()).device
    model_cpu = model.to("cpu")
    reps = -(-settings.batch_size // example.shape[0])
    batch = example.detach().cpu().repeat(reps, *[1] * (example.dim() - 1))[: settings.batch_size].contiguous()
    best: tuple[float, float] | None = None
    attempts = 0
    try:
        with _torch_threads(settings.threads):
            run = LATENCY_BACKENDS[settings.backend](model_cpu, batch, settings.threads)
            while attempts < settings.attempts:
                attempts += 1
                for _ in range(settings.warmup):
                    run()
                times = []
                for _ in range(settings.repeats):
                    tick = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - tick)
                candidate = (statistics.median(times) * 1e3, _spread(times))
                if best is None or candidate[1] < best[1]:
                    best = candidate
                if candidate[1] <= settings.max_spread:
                    break
    finally:
        model.to(device)
        model.train(was_training)
    assert best is not None
    return LatencyResult(best[0], best[1], attempts, time.perf_counter() - start)

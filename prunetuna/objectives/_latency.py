"""Measured latency of a model, with backends by name (torch eager, onnxruntime; remote: on the device agent).

On a shared, noisy machine one timing is not a figure: threads are fixed, the model is warmed up,
many repeats are taken and the median kept. What decides whether the figure is trustworthy is the
uncertainty of that median, not how much single runs vary (more repeats never narrow the latter):
the relative half-width of the median's 95% interval, 1.57 * IQR / sqrt(n) / median (the notch of a
box plot). A measurement whose interval is wider than ``max_ci`` is taken again, up to ``attempts``
times, and the tightest is kept. The spread of single runs, IQR / median, is reported beside it.
"""

from __future__ import annotations

import io
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from prunetuna.device import time_runner
from prunetuna.objectives._outputs import output_leaves
from prunetuna.objectives._remote import REMOTE
from prunetuna.registry import Registry

__all__ = [
    "LATENCY_BACKENDS",
    "LatencyResult",
    "LatencySettings",
    "export_onnx",
    "measure_latency",
    "portable_attention",
]


@dataclass(frozen=True)
class LatencySettings:
    backend: str = "torch"
    batch_size: int = 1
    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    max_ci: float = 0.05
    attempts: int = 3
    url: str | None = None  # backend remote: the device agent (prunetuna device serve)
    provider: str | None = None  # backend remote: the agent's onnxruntime execution provider (default CPU)
    cache: bool = (
        True  # candidates with identical pruned shapes share measurements (prunetuna.objectives._latency_cache)
    )

    def __post_init__(self) -> None:
        LATENCY_BACKENDS.get(self.backend)  # an unknown name is an error here, not at the first measurement
        if (self.backend == "remote") != (self.url is not None):
            raise ValueError("latency.url names the device agent of backend remote, and only that backend")
        for name in ("batch_size", "threads", "repeats", "attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"latency.{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.max_ci <= 0:
            raise ValueError(f"latency.warmup must be >= 0 and latency.max_ci > 0, got {self.warmup}, {self.max_ci}")


@dataclass(frozen=True)
class LatencyResult:
    """Median milliseconds per batch; the kept attempt's spread (IQR / median) and median interval; attempts taken."""

    median_ms: float
    spread: float
    ci: float
    attempts: int
    seconds: float


Runner = Callable[[], object]
"""Runs the model once on the prepared batch."""

Backend = Callable[[nn.Module, torch.Tensor, int], Runner]
"""(model on the CPU, batch, threads) -> a runner."""

LATENCY_BACKENDS: Registry[Backend] = Registry("latency backend")


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@LATENCY_BACKENDS.register("torch")
def _torch_runner(model: nn.Module, batch: torch.Tensor, threads: int) -> Runner:
    model.eval()

    def run() -> object:
        with torch.inference_mode():
            return model(batch)

    return run


@contextmanager
def portable_attention() -> Iterator[None]:
    """``nn.MultiheadAttention`` without its inference fast path, restored after.

    In eval mode without gradients the fast path runs ``aten::_native_multi_head_attention``, one
    fused kernel that ONNX has no operator for and that makes a TorchScript trace differ between
    runs; the plain path computes the same attention from ordinary operators.
    """
    saved = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(saved)


def export_onnx(model: nn.Module, batch: torch.Tensor) -> bytes:
    """The model as ONNX bytes (TorchScript-based exporter: a fraction of a second for small CNNs).

    Every output leaf is a named graph output (:func:`~prunetuna.objectives.output_leaves`: ``output`` for a
    single tensor), its first axis the batch axis where it has one. The model runs once on ``batch`` before it
    is traced, so a module that caches shape-dependent buffers (ultralytics' anchors) is traced with the cache
    it will be checked with.
    """
    model.eval()
    with torch.no_grad(), portable_attention():
        leaves = output_leaves(model(batch))
    names = [name for name, _ in leaves]
    axes = {name: {0: "batch"} for name, tensor in leaves if tensor.dim() and tensor.shape[0] == batch.shape[0]}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), portable_attention():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (batch,),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=names,
            dynamic_axes={"input": {0: "batch"}, **axes},
        )
    return buffer.getvalue()


@LATENCY_BACKENDS.register("onnxruntime")
def _onnxruntime_runner(model: nn.Module, batch: torch.Tensor, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(export_onnx(model, batch), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch.numpy()}
    return lambda: session.run(None, feed)


LATENCY_BACKENDS.register("remote", REMOTE)  # measured on the device agent: prunetuna.objectives._remote


def measure_latency(model: nn.Module, example: torch.Tensor, settings: LatencySettings) -> LatencyResult:
    """Median latency of one batch of ``settings.batch_size`` inputs (repeated from ``example``) on the CPU."""
    start = time.perf_counter()
    was_training = model.training
    device = next(model.parameters()).device
    model_cpu = model.to("cpu")
    reps = -(-settings.batch_size // example.shape[0])
    batch = example.detach().cpu().repeat(reps, *[1] * (example.dim() - 1))[: settings.batch_size].contiguous()
    try:
        backend = LATENCY_BACKENDS[settings.backend]
        if hasattr(backend, "measure"):  # measured elsewhere (the device agent), on the candidate's ONNX export
            median_ms, spread, ci, attempts = backend.measure(
                export_onnx(model_cpu, batch), list(batch.shape), settings
            )
            return LatencyResult(median_ms, spread, ci, attempts, time.perf_counter() - start)
        with _torch_threads(settings.threads):
            run = backend(model_cpu, batch, settings.threads)
            timing = time_runner(
                run,
                warmup=settings.warmup,
                repeats=settings.repeats,
                max_ci=settings.max_ci,
                attempts=settings.attempts,
            )
    finally:
        model.to(device)
        model.train(was_training)
    return LatencyResult(timing.median_ms, timing.spread, timing.ci, timing.attempts, time.perf_counter() - start)

"""On the device: check an uploaded ONNX model, measure it with onnxruntime, describe the device (no torch)."""

from __future__ import annotations

import os
import platform
import time
from typing import Any, Iterator

from prunetuna.device._protocol import ALLOWED_DOMAINS, MeasureReply, MeasureRequest, ProtocolError
from prunetuna.device._stats import time_runner

__all__ = ["check_model", "cpu_model", "describe_device", "measure_model"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def describe_device(provider: str | None = None) -> dict[str, Any]:
    """What a measurement ran on: host, CPU model and cores, OS, onnxruntime version and providers."""
    import onnxruntime as ort

    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "onnxruntime": ort.__version__,
        "providers": ",".join(ort.get_available_providers()),
    }
    if provider is not None:
        info["provider"] = provider
    return info


def _graphs(graph: Any) -> Iterator[Any]:
    """A graph and every subgraph in its nodes' attributes (If, Loop, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _graphs(sub)


def _tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors


def check_model(data: bytes) -> Any:
    """The parsed model, if it uses only standard ONNX operator domains and keeps its weights inside.

    Refused (``ProtocolError``, HTTP 400): bytes that are not an ONNX model, an operator or opset import
    from another domain (custom-op libraries, onnxruntime's ``com.microsoft``), tensors stored as
    external data (they name files on the device).
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ProtocolError(f"the upload is not an ONNX model ({exc.__class__.__name__})") from None
    if not model.graph.node:
        raise ProtocolError("the upload is not an ONNX model (its graph has no nodes)")
    functions = {(f.domain, f.name) for f in model.functions}
    allowed = set(ALLOWED_DOMAINS) | {domain for domain, _ in functions}
    for opset in model.opset_import:
        if opset.domain not in allowed:
            raise ProtocolError(
                f"operator domain {opset.domain!r} refused: only the standard ONNX domains "
                f"{', '.join(repr(d) for d in ALLOWED_DOMAINS)} are measured (no custom operators)"
            )
    graphs = [*_graphs(model.graph), *model.functions]  # function bodies hold nodes, not initializers
    for graph in graphs:
        for node in graph.node:
            if node.domain not in allowed:
                raise ProtocolError(
                    f"node {node.name or node.op_type!r} uses operator domain {node.domain!r}: only the "
                    f"standard ONNX domains {', '.join(repr(d) for d in ALLOWED_DOMAINS)} are measured"
                )
        if hasattr(graph, "initializer"):
            for tensor in _tensors(graph):
                if tensor.data_location == onnx.TensorProto.EXTERNAL:
                    raise ProtocolError(
                        f"tensor {tensor.name!r} is stored as external data: send a model with its weights inside"
                    )
    return model


def measure_model(data: bytes, request: MeasureRequest) -> MeasureReply:
    """Median latency of one run of ``data`` on an input of ``request.input_shape`` with the requested provider."""
    import numpy as np
    import onnxruntime as ort

    start = time.perf_counter()
    check_model(data)
    available = ort.get_available_providers()
    if request.provider not in available:
        raise ProtocolError(
            f"execution provider {request.provider!r} is not installed here; available: {', '.join(available)}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = request.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = ort.InferenceSession(data, options, providers=[request.provider])
    except Exception as exc:  # onnxruntime raises its own exception types for invalid graphs
        raise ProtocolError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0][:300]}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ProtocolError(f"the model must have exactly one input, it has {len(inputs)}")
    if inputs[0].type != "tensor(float)":
        raise ProtocolError(f"the model's input must be float32, it is {inputs[0].type}")
    feed = {inputs[0].name: np.random.default_rng(0).standard_normal(request.input_shape, dtype=np.float32)}
    try:
        session.run(None, feed)
    except Exception as exc:
        raise ProtocolError(
            f"the model does not run on input shape {request.input_shape}: {str(exc).splitlines()[0][:300]}"
        ) from None
    timing = time_runner(
        lambda: session.run(None, feed),
        warmup=request.warmup,
        repeats=request.repeats,
        max_ci=request.max_ci,
        attempts=request.attempts,
    )
    return MeasureReply(
        timing.median_ms,
        timing.spread,
        timing.ci,
        timing.attempts,
        time.perf_counter() - start,
        describe_device(request.provider),
    )

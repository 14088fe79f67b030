"""How an exported file's outputs compare with torch's: every output leaf on its own scale."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from prunetuna.objectives import output_leaves

__all__ = [
    "ATOL",
    "PER_SAMPLE",
    "RTOL",
    "ExportCheckFailed",
    "OutputCheck",
    "compare_leaves",
    "compare_outputs",
    "compare_per_sample",
    "worst",
]

RTOL = 1e-4
ATOL = 1e-4
"""An output passes when every element is within ``ATOL * scale + RTOL * |torch's|`` of torch's, with ``scale``
that output's largest torch magnitude (at least 1): float32 error grows with the size of the values a deep
network computes (resnet50's ONNX logits differ by 2e-4 at magnitudes near 5), so a fixed absolute bound fails
correct exports of large models while a scaled one still catches a wrong graph. Each output of a model with
several has its own scale (a detector's box coordinates in pixels beside its class scores in 0..1)."""


class ExportCheckFailed(Exception):
    """The rebuilt model or the written file does not reproduce the logged numbers, or cannot be written in the
    format asked for (exit status 1)."""


@dataclass(frozen=True)
class OutputCheck:
    """How one output of an exported file compares with torch's on one validation batch."""

    max_abs_diff: float
    max_rel_diff: float  # max_abs_diff / scale
    scale: float  # the largest |torch output|, at least 1
    same_top_class: float | None  # share of samples whose argmax agrees (2-D outputs), else None
    passed: bool
    shape: tuple[int, ...] = ()  # torch's shape of this output

    def card(self) -> dict:
        """The check as the model card records it (``atol``: the bound this output was held to)."""
        return {**asdict(self), "shape": list(self.shape), "atol": ATOL * self.scale, "rtol": RTOL}


def compare_outputs(got: np.ndarray, expected: np.ndarray) -> OutputCheck:
    """``got`` against ``expected`` with :data:`ATOL` scaled to the outputs and :data:`RTOL`
    (torch.testing.assert_close)."""
    got_t, expected_t = (torch.from_numpy(np.array(a, dtype=np.float32)) for a in (got, expected))
    scale = max(1.0, float(expected_t.abs().max())) if expected_t.numel() else 1.0
    same_shape = got_t.shape == expected_t.shape
    difference = float((got_t - expected_t).abs().max()) if same_shape and got_t.numel() else float("inf")
    if same_shape and not got_t.numel():
        difference = 0.0
    try:
        torch.testing.assert_close(got_t, expected_t, rtol=RTOL, atol=ATOL * scale)
        passed = True
    except AssertionError:
        passed = False
    top = float((got_t.argmax(1) == expected_t.argmax(1)).float().mean()) if same_shape and got_t.dim() == 2 else None
    return OutputCheck(difference, difference / scale, scale, top, passed, tuple(expected_t.shape))


def compare_leaves(got: list[np.ndarray], expected: list[tuple[str, np.ndarray]]) -> dict[str, OutputCheck]:
    """Every output leaf of a file against torch's, by position, named by torch's leaf names
    (``ExportCheckFailed`` when the file returns another number of outputs)."""
    if len(got) != len(expected):
        raise ExportCheckFailed(
            f"the file returns {len(got)} outputs where torch's model returns {len(expected)} "
            f"({', '.join(name for name, _ in expected)})"
        )
    return {name: compare_outputs(g, e) for g, (name, e) in zip(got, expected)}


def _badness(check: OutputCheck) -> tuple[bool, float]:
    return (not check.passed, check.max_rel_diff)


def worst(checks: dict[str, OutputCheck]) -> tuple[str, OutputCheck]:
    """The output furthest from torch's, relative to its scale (a failed one first)."""
    return max(checks.items(), key=lambda item: _badness(item[1]))


PER_SAMPLE = 8
"""How many validation samples a file whose graph fixed its batch at one is compared on, one at a time."""


def compare_per_sample(
    run: Callable[[torch.Tensor], list[np.ndarray]], model: torch.nn.Module, batch: torch.Tensor
) -> dict[str, OutputCheck]:
    """Torch's model and the file (``run``) on the first :data:`PER_SAMPLE` samples of ``batch`` one at a time, each
    output's worst sample kept: for models whose traced graph loops over the images of its example (torchvision's
    detectors), so the file takes one image, and whose outputs per image (boxes after NMS) vary in number."""
    checks: dict[str, OutputCheck] = {}
    for i in range(min(PER_SAMPLE, len(batch))):
        sample = batch[i : i + 1]
        with torch.no_grad():
            expected = [(name, tensor.numpy()) for name, tensor in output_leaves(model(sample))]
        try:
            got = run(sample)
        except Exception as exc:  # noqa: BLE001 - the runtime's own error types (onnxruntime, torch.jit)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportCheckFailed(f"the file does not run on a validation image ({first})") from None
        for name, check in compare_leaves(got, expected).items():
            checks[name] = max(check, checks.get(name, check), key=_badness)
    return checks

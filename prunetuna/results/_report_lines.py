"""Lines under the report's table: where latency was measured, why trials failed, which were promoted."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

__all__ = ["device_line", "failure_lines", "promoted_line"]


class _Trial(Protocol):
    number: int
    state: str
    fail_reason: str | None
    metrics: dict[str, float]


def device_line(device: dict[str, Any]) -> str:
    """Where latency was measured: ``device agent http://... (Cortex-A76, 4 cores, onnxruntime 1.19, CPU)``."""
    where = device.get("where", "?") + (f" {device['url']}" if device.get("url") else "")
    runtime = (
        f"onnxruntime {device['onnxruntime']}" if device.get("onnxruntime") else f"torch {device.get('torch', '?')}"
    )
    provider = f", {device['provider']}" if device.get("provider") else ""
    host, cpu, cores = device.get("host", "?"), device.get("cpu", "?"), device.get("cores", "?")
    return f"{where} ({host}: {cpu}, {cores} cores, {runtime}{provider})"


def failure_lines(trials: Sequence[_Trial], width: int = 240) -> list[str]:
    """One line per distinct reason among the failed trials: ``failed trials 0, 2: RuntimeError: ...`` (the reason's
    first line, cut at ``width`` characters); a failed trial without a recorded reason says so."""
    by_reason: dict[str, list[int]] = {}
    for trial in trials:
        if trial.state == "FAIL":
            reason = (trial.fail_reason or "no reason recorded").strip().splitlines()
            key = reason[0][:width] if reason else "no reason recorded"
            by_reason.setdefault(key, []).append(trial.number)
    return [
        f"failed trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}: {reason}"
        for reason, numbers in by_reason.items()
    ]


def promoted_line(trials: Sequence[_Trial]) -> str | None:
    """The trials ``search.promote`` fine-tuned longer (their record has the short score, ``accuracy_short``):
    their scores are after more training than the others', which the table alone does not show."""
    numbers = [str(t.number) for t in trials if "accuracy_short" in t.metrics]
    if not numbers:
        return None
    return (
        f"promoted trials {', '.join(numbers)}: scored after search.promote's longer fine-tune "
        "(the short fine-tune's score is their metric accuracy_short)"
    )

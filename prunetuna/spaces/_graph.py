"""torch-pruning's dependency graph, built under a time and memory guard, its failures turned into bad input.

Graph building is pure Python (a forward pass with hooks, then a walk over the autograd graph and,
per group, over the coupled layers), so a periodic ``SIGALRM`` interrupts it between bytecodes: the
handler checks elapsed time and resident memory, prints progress once building takes more than a
few seconds, and raises :class:`GraphTooExpensive` past a limit. The guard needs the main thread
(where Python delivers signals); elsewhere the graph is built unguarded.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

import torch
import torch_pruning as tp
from torch import nn

from prunetuna.errors import UserError
from prunetuna.spaces.rewrites import opaque_for_tracing, opaque_ops

__all__ = [
    "GraphCost",
    "GraphLimits",
    "GraphTooExpensive",
    "copy_with_graph",
    "graph_and_groups",
    "guarded",
    "indexed_groups",
    "last_graph_cost",
    "measured",
    "model_label",
    "reusing",
    "take_graph",
]

T = TypeVar("T")
WHAT_TO_TRY = (
    "put the layers around it in pruning.ignore, or use pruning.method unstructured or nm "
    "(masks need no dependency graph, but keep every shape: no speedup on dense kernels)"
)


@dataclass(frozen=True)
class GraphLimits:
    """At most ``seconds`` of wall time and ``memory_gb`` of resident memory gained while building the graph."""

    seconds: float = 30.0
    memory_gb: float = 4.0
    progress_after: float = 5.0
    tick: float = 0.5


@dataclass(frozen=True)
class GraphCost:
    """What building one dependency graph took: CPU seconds (this process, all threads), wall seconds, and the
    peak resident memory gained over the memory before it (GB; 0 where the peak cannot be read)."""

    cpu_seconds: float
    seconds: float
    peak_gb: float


_LAST: list[GraphCost] = []
_LAST_GRAPH: list[tp.DependencyGraph] = []


def last_graph_cost() -> GraphCost | None:
    """The cost of the last graph built in this process (by a space or by a candidate's pruner)."""
    return _LAST[-1] if _LAST else None


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0


def _reset_peak() -> bool:
    """Reset the kernel's resident-memory high-water mark (Linux: ``5`` into ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


@contextmanager
def measured() -> Iterator[None]:
    """Record the CPU time, wall time and peak memory of the block as :func:`last_graph_cost`."""
    base, resettable = _status_kb("VmRSS"), _reset_peak()
    cpu, wall = time.process_time(), time.monotonic()
    try:
        yield
    finally:
        peak = (_status_kb("VmHWM") - base) / 2**20 if resettable else 0.0
        _LAST[:] = [GraphCost(time.process_time() - cpu, time.monotonic() - wall, max(0.0, peak))]


def take_graph(model: nn.Module) -> tp.DependencyGraph | None:
    """The graph :func:`graph_and_groups` last built, if it was of ``model`` (handed over once, then forgotten)."""
    graph = _LAST_GRAPH.pop() if _LAST_GRAPH else None
    return graph if graph is not None and graph.model is model else None


def copy_with_graph(model: nn.Module, graph: tp.DependencyGraph | None) -> tuple[nn.Module, tp.DependencyGraph | None]:
    """A deep copy of ``model`` and of its dependency ``graph`` together (the copy's nodes point at the copy's
    layers); the autograd nodes it reads shapes from and the pruners are shared, not copied. Without a graph, or
    when it does not copy, the model alone (its pruner then builds a graph of its own)."""
    if graph is not None:
        shared: list[object] = [graph.ops, *graph.REGISTERED_PRUNERS.values(), *graph.CUSTOMIZED_PRUNERS.values()]
        shared += [node.grad_fn for node in graph.module2node.values()]  # the pruners are compared by identity
        memo: dict[int, object] = {id(o): o for o in shared if o is not None}
        try:
            return copy.deepcopy((model, graph), memo)
        except (TypeError, RuntimeError, AttributeError):  # a graph holding what deepcopy cannot copy: rebuild instead
            pass
    return copy.deepcopy(model), None


@contextmanager
def reusing(graph: tp.DependencyGraph | None) -> Iterator[None]:
    """While active, torch-pruning's pruners get ``graph`` instead of building one, when they build one of its model."""
    if graph is None:
        yield
        return
    build = tp.DependencyGraph.build_dependency

    def reuse(self: tp.DependencyGraph, model: nn.Module, *args: object, **kwargs: object) -> tp.DependencyGraph:
        return graph if model is graph.model else build(self, model, *args, **kwargs)

    tp.DependencyGraph.build_dependency = reuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        tp.DependencyGraph.build_dependency = build  # type: ignore[method-assign]


_GROUP = tp.dependency.group.Group


def _has_pruning_op(self: _GROUP, dep: object, idxs: Sequence[object]) -> bool:
    keys = vars(self).get("_prunetuna_keys")
    if keys is None or len(keys[1]) != len(self._group):  # built, or rebuilt after items were replaced
        keys = (set(), list(self._group))
        keys[0].update((d.target, d.handler, tuple(i)) for d, i in self._group)
        self._prunetuna_keys = keys
    return (dep.target, dep.handler, tuple(idxs)) in keys[0]


def _add_dep(self: _GROUP, dep: object, idxs: Sequence[object]) -> None:
    _ADD_DEP(self, dep, idxs)
    keys = vars(self).get("_prunetuna_keys")
    if keys is not None:
        keys[0].add((dep.target, dep.handler, tuple(idxs)))
        keys[1].append(self._group[-1])


_ADD_DEP = _GROUP.add_dep


@contextmanager
def indexed_groups() -> Iterator[None]:
    """While active, torch-pruning's groups answer "is this (layer, pruning function, indices) already in?" from a
    set instead of comparing it with every item (the same answer; its walk asks it once per item it adds, so a group
    of n items cost n^2 list comparisons: tens of seconds for a model whose reshapes make groups of thousands)."""
    has, add = _GROUP.has_pruning_op, _GROUP.add_dep
    _GROUP.has_pruning_op, _GROUP.add_dep = _has_pruning_op, _add_dep  # type: ignore[method-assign]
    try:
        yield
    finally:
        _GROUP.has_pruning_op, _GROUP.add_dep = has, add  # type: ignore[method-assign]


class GraphTooExpensive(UserError):
    """Graph building ran past its time or memory limit (bad input: exit status 2)."""


def model_label(model: nn.Module) -> str:
    return type(model).__name__


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: time is still bounded
        return 0


@contextmanager
def _alarm(limits: GraphLimits, label: str, what: str) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    start, base = time.monotonic(), _rss_bytes()
    shown = [0.0]

    def check(_signum: int, _frame: object) -> None:
        elapsed, grown = time.monotonic() - start, (_rss_bytes() - base) / 2**30
        if elapsed > limits.seconds or grown > limits.memory_gb:
            signal.setitimer(signal.ITIMER_REAL, 0)
            over = (
                f"{elapsed:.0f} s (limit {limits.seconds:g} s)"
                if elapsed > limits.seconds
                else f"{grown:.1f} GB (limit {limits.memory_gb:g} GB)"
            )
            raise GraphTooExpensive(
                f"model: {label}: {what} stopped after {over}; torch-pruning's dependency graph of this "
                "architecture grows too costly (many reshapes and permutes multiply it); raise "
                "pruning.graph_seconds / "
                f"pruning.graph_memory_gb if the machine can afford it, or {WHAT_TO_TRY}"
            )
        if elapsed >= limits.progress_after and elapsed - shown[0] >= limits.progress_after:
            shown[0] = elapsed
            print(
                f"prunetuna: {what} of {label}: {elapsed:.0f} s, +{grown:.1f} GB so far "
                f"(stops at {limits.seconds:g} s or {limits.memory_gb:g} GB)",
                file=sys.stderr,
                flush=True,
            )

    previous = signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, limits.tick, limits.tick)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f.name for f in frames if "torch_pruning" in f.filename]
    return f" in torch-pruning's {inside[-1]}" if inside else ""


def guarded(model: nn.Module, what: str, build: Callable[[], T], limits: GraphLimits | None = None) -> T:
    """``build()`` (which builds or walks the graph of ``model``) under ``limits``; any failure is a one-line
    UserError."""
    label = model_label(model)
    try:
        with _alarm(limits or GraphLimits(), label, what):
            return build()
    except UserError:
        raise
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure inside torch-pruning means this model cannot be handled
        message = " ".join(str(exc).split())[:160]
        raise UserError(
            f"model: {label}: torch-pruning cannot build its dependency graph ({exc.__class__.__name__}{_where(exc)}: "
            f"{message}), e.g. a channel shuffle or a reshape it cannot map; {WHAT_TO_TRY}"
        ) from None


def graph_and_groups(
    model: nn.Module,
    example: torch.Tensor,
    ignored: Sequence[nn.Module],
    root_types: Sequence[type[nn.Module]],
    limits: GraphLimits | None = None,
) -> tuple[tp.DependencyGraph, list]:
    """The dependency graph of ``model`` (eval mode, traced on one example) and its groups, under one guard."""

    def build() -> tuple[tp.DependencyGraph, list]:
        with opaque_for_tracing(model):
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example[:1])
        skipped = list(ignored) + opaque_ops(graph)
        _LAST_GRAPH[:] = [graph]
        with indexed_groups():
            return graph, list(graph.get_all_groups(ignored_layers=skipped, root_module_types=tuple(root_types)))

    was_training = model.training
    model.eval()
    try:
        with measured():
            return guarded(model, "building the dependency graph", build, limits)
    finally:
        model.train(was_training)

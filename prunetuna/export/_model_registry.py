"""``prunetuna export ... --register NAME``: the exported model as a version in the MLflow Model Registry.

An ONNX export is logged with MLflow's ONNX flavor, a TorchScript or ``pt`` export with its PyTorch
flavor (as TorchScript, so serving it needs torch only), each with an input example from the
validation data and the signature inferred from it. The model card becomes the version's
description; the trial, study, source run and metrics become its tags. The model is logged to a run
``export-trial-<n>`` in the study's experiment, under the study's parent run.
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from prunetuna.errors import UserError
from prunetuna.registry import Registry
from prunetuna.store import Role, Tag

__all__ = ["FLAVORS", "RegisteredVersion", "check_model_name", "register_export"]

DESCRIPTION_LIMIT = 5000  # characters a model version's description holds in MLflow's SQL stores
EXAMPLE_ROWS = 4


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str


def check_model_name(workspace, name: str) -> None:  # noqa: ANN001 - prunetuna.search.Workspace
    """Ask the registry whether it takes ``name``, before anything is exported (nothing is written)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from prunetuna.store import mask_url

    client = MlflowClient(tracking_uri=workspace.tracking_uri, registry_uri=workspace.tracking_uri)
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return  # a new name: the first version creates it
        if exc.error_code == "INVALID_PARAMETER_VALUE":
            raise UserError(
                f"--register: the model registry refuses the name {name!r} ({exc.message}); choose another name"
            ) from None
        raise UserError(
            f"--register: cannot use the model registry at {mask_url(workspace.tracking_uri)} ({exc.message})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - an unreachable server, a broken store
        raise UserError(
            f"--register: cannot reach the model registry at {mask_url(workspace.tracking_uri)} "
            f"({exc.__class__.__name__}); check --tracking-uri"
        ) from None


def _log_onnx(out: Path, **kwargs: Any):  # noqa: ANN202 - mlflow's ModelInfo
    import mlflow.onnx
    import onnx

    return mlflow.onnx.log_model(
        onnx.load(str(out)),
        onnx_execution_providers=["CPUExecutionProvider"],  # what export checked it on
        pip_requirements=_requirements("onnx", "onnxruntime", "numpy"),
        **kwargs,
    )


def _log_torchscript(model, **kwargs: Any):  # noqa: ANN001, ANN202 - a ScriptModule; mlflow's ModelInfo
    import mlflow.pytorch

    return mlflow.pytorch.log_model(
        model,
        serialization_format="pickle",  # what MLflow saves a ScriptModule with
        pip_requirements=_requirements("torch", "numpy"),
        **kwargs,
    )


def _load_torchscript(out: Path, model: Any, example: np.ndarray):  # noqa: ANN202
    import torch

    return torch.jit.load(str(out), map_location="cpu")


def _trace_pt(out: Path, model: Any, example: np.ndarray):  # noqa: ANN202
    import torch

    from prunetuna.export._formats import trace_model

    return trace_model(model, torch.from_numpy(example))  # the rebuilt model export checked against the file


@dataclass(frozen=True)
class Flavor:
    """How an export format goes into the registry: ``load(out, rebuilt model, example)`` gives what ``log`` takes."""

    load: Callable[[Path, Any, np.ndarray], Any]
    log: Callable[..., Any]


FLAVORS: Registry[Flavor] = Registry("format")
FLAVORS.register("onnx", Flavor(lambda out, model, example: out, _log_onnx))
FLAVORS.register("torchscript", Flavor(_load_torchscript, _log_torchscript))
FLAVORS.register("pt", Flavor(_trace_pt, _log_torchscript))
FLAVORS.register("ultralytics", Flavor(_trace_pt, _log_torchscript))  # the same rebuilt model, served as TorchScript


def _requirements(*packages: str) -> list[str]:
    """Pinned to what is installed here (given, so MLflow does not load the model in a subprocess to infer them)."""
    from importlib import metadata

    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={metadata.version(package).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def card_description(card: dict) -> str:
    """The model card as the version's description: a summary line, then the card as JSON (shortened to fit)."""
    metrics = card["metrics"]
    head = (
        f"Study `{card['study']}`, trial {card['trial']} ({card['format']} export): accuracy "
        f"{metrics.get('accuracy', float('nan')):.4f}"
        + "".join(
            f", {k} {metrics[k]:.3f}"
            for k in ("flops_ratio", "params_ratio", "latency_ratio", "speedup")
            if k in metrics
        )
        + f"; max |output - torch| {card['checks']['max_abs_diff_vs_torch']:.2g}.\n\nModel card:\n\n"
    )
    for body in (
        json.dumps(card, indent=1),
        json.dumps(card),
        json.dumps({k: v for k, v in card.items() if k != "sparsity"}),
    ):
        text = f"{head}```json\n{body}\n```"
        if len(text) <= DESCRIPTION_LIMIT:
            return text
    return text[:DESCRIPTION_LIMIT]


def _version_tags(card: dict) -> dict[str, str]:
    tags = {
        Tag.STUDY: card["study"],
        Tag.TRIAL: str(card["trial"]),
        Tag.FORMAT: card["format"],
        Tag.SOURCE_RUN: str(card.get("mlflow_run_id") or ""),
    }
    tags.update({f"metric.{k}": f"{v:.6g}" for k, v in card["metrics"].items() if isinstance(v, (int, float))})
    return tags


@contextmanager
def _fluent_store(uri: str) -> Iterator[None]:
    """MLflow's ``log_model`` writes through its process-wide tracking and registry URIs (and their environment
    variables): pointed at the study's store for the call only, so nothing later in this process inherits them."""
    import mlflow

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {key: os.environ.get(key) for key in keys}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def register_export(config, workspace, exported, out: Path, name: str) -> RegisteredVersion:  # noqa: ANN001
    """Log the file ``out`` (``exported``: its card, the rebuilt model and its example batch, from ``export_trial``)
    as a new version of registered model ``name``."""
    import mlflow
    import torch
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from prunetuna.export._formats import EXPORTERS
    from prunetuna.runtime import quiet_libraries
    from prunetuna.store import StudyTracker

    quiet_libraries()
    warnings.filterwarnings("ignore", module="mlflow")  # notes on pip pins and input examples, one per call
    tracker = StudyTracker(workspace, config.name)
    tracker.connect(create=False)
    parent = tracker.find_parent()
    card = exported.card
    example = exported.batch[:EXAMPLE_ROWS].numpy()
    flavor = FLAVORS[card["format"]]
    model = flavor.load(out, exported.model, example)
    tags = {Tag.ROLE: Role.EXPORT.value, Tag.TRIAL: str(card["trial"]), **({Tag.PARENT: parent} if parent else {})}
    with (
        _fluent_store(workspace.tracking_uri),
        mlflow.start_run(
            experiment_id=tracker.experiment_id, run_name=f"export-trial-{card['trial']}", tags=tags
        ) as run,
    ):
        mlflow.log_dict(card, "model_card.json")
        leaves = EXPORTERS[card["format"]].run(out, torch.from_numpy(example))  # what the exported file answers
        names = card.get("outputs") or [f"output_{i}" for i in range(len(leaves))]
        output = leaves[0] if len(leaves) == 1 else dict(zip(names, leaves))
        info = flavor.log(
            model,
            name="model",
            input_example=example,
            signature=infer_signature(example, output),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient(tracking_uri=workspace.tracking_uri, registry_uri=workspace.tracking_uri)
    client.update_model_version(name, version, description=card_description(card))
    for key, value in _version_tags(card).items():
        client.set_model_version_tag(name, version, key, value)
    return RegisteredVersion(name, version, run.info.run_id, f"models:/{name}/{version}")

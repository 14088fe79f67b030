"""What makes a trial reproducible: config hash, seed, package versions, git commit."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from prunetuna.config import ExperimentConfig

__all__ = ["config_hash", "git_commit", "manifest", "package_versions", "study_manifest"]

PACKAGES = (
    "prunetuna",
    "torch",
    "torchvision",
    "timm",
    "lightning",
    "optuna",
    "mlflow",
    "torch-pruning",
    "onnxruntime",
    "numpy",
)


def config_hash(config: ExperimentConfig) -> str:
    """sha256 of the validated config (defaults filled in), so equal settings hash equally."""
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "torch" in sys.modules:  # with its build tag (2.14.1+cu130, 2.13.0+cpu), which the wheel's metadata leaves out
        versions["torch"] = sys.modules["torch"].__version__
    return versions


@functools.cache
def git_commit(folder: str = ".") -> str | None:
    """The commit checked out in ``folder`` (with ``+dirty`` for local changes), or None outside a repository."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def study_manifest(config: ExperimentConfig) -> dict[str, Any]:
    """The part of a manifest that is the same for every trial of a study (computed once per search)."""
    return {
        "study": config.name,
        "seed": config.seed,
        "config_sha256": config_hash(config),
        "config": config.model_dump(mode="json"),
        "versions": package_versions(),
        "git_commit": git_commit(str(Path.cwd())),
    }


def manifest(config: ExperimentConfig, **extra: Any) -> dict[str, Any]:
    return {**study_manifest(config), **extra}

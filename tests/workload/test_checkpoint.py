"""model.checkpoint: weights-only files load as before; a pickled ultralytics best.pt loads only when the YAML trusts
it (through ultralytics' own loader, into the DetectionModel inside the user's LightningModule), else one line."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from prunetuna.config import ModelConfig
from prunetuna.errors import UserError
from prunetuna.workload import build_model

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))
tasks = pytest.importorskip("ultralytics.nn.tasks", reason="ultralytics is not installed ('prunetuna[yolo]')")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "examples" / "yolo"))


def _best_pt(path: Path) -> torch.nn.Module:
    """A best.pt as ultralytics' trainer writes one: a pickled dict whose ``ema`` is the half-precision model."""
    torch.manual_seed(123)
    model = tasks.DetectionModel("yolov8n.yaml", nc=10, verbose=False)
    torch.save({"epoch": 3, "model": None, "ema": model.half(), "train_args": {"imgsz": 64}}, path)
    return model.float()


def _config(path: Path, **extra: object) -> ModelConfig:
    return ModelConfig(
        target="yolo_module:YoloDetector", kwargs={"imgsz": 64}, prune="model", checkpoint=str(path), **extra
    )


def test_best_pt_loads_only_when_trusted(tmp_path: Path) -> None:
    saved = _best_pt(tmp_path / "best.pt")
    with pytest.raises(UserError) as refused:
        build_model(_config(tmp_path / "best.pt"))
    message = str(refused.value)
    assert "\n" not in message and "not a weights-only checkpoint" in message
    assert "model.trusted_checkpoint: true" in message

    module = build_model(_config(tmp_path / "best.pt", trusted_checkpoint=True))
    loaded = module.model.state_dict()
    assert set(loaded) == set(saved.state_dict())
    assert all(torch.equal(loaded[k].float(), v.float()) for k, v in saved.state_dict().items())

    torch.save({"ema": tasks.DetectionModel("yolov8n.yaml", nc=3, verbose=False)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"does not fit the model \(.*size mismatch"):
        build_model(_config(tmp_path / "other.pt", trusted_checkpoint=True))
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="broken.pt cannot be loaded"):
        build_model(_config(tmp_path / "broken.pt", trusted_checkpoint=True))


def test_trust_goes_with_a_checkpoint() -> None:
    with pytest.raises(ValueError, match="trusted_checkpoint goes with checkpoint"):
        ModelConfig(target="yolo_module:YoloDetector", trusted_checkpoint=True)

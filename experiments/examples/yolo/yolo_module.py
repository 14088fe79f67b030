"""A LightningModule around a stock ultralytics YOLO detector: ultralytics' own loss, NMS and mAP.

prunetuna prunes ``self.model`` (``model.prune: model``), the ``DetectionModel`` ultralytics builds from its YAML
(``yolov8n.yaml``, ``yolo11n.yaml``, ...) or loads from a checkpoint; the module's ``training_step`` (ultralytics'
``v8DetectionLoss``) fine-tunes each candidate, and validation logs ``val/map50`` and ``val/map50_95`` computed as
ultralytics' validator does (its ``non_max_suppression``, ``box_iou``, ``match_predictions`` and
``ap_per_class``, imported, not copied: ultralytics is AGPL-3.0 and stays an optional install,
``pip install 'prunetuna[yolo]'``).

Batches are what :mod:`yolo_data` yields: ``{"img", "cls", "bboxes", "batch_idx"}``.
"""

from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks, no downloads
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))  # no settings file in ~


class YoloDetector(pl.LightningModule):
    """``model``: an ultralytics model YAML (random init) such as ``yolov8n.yaml``; ``nc`` classes; ``imgsz`` the
    square input side (a multiple of 32). AdamW at ``lr``; NMS at ``conf`` / ``iou`` as ultralytics' val."""

    def __init__(
        self,
        model: str = "yolov8n.yaml",
        nc: int = 10,
        imgsz: int = 128,
        lr: float = 0.002,
        weight_decay: float = 0.0005,
        conf: float = 0.001,
        iou: float = 0.7,
        max_det: int = 100,
    ) -> None:
        super().__init__()
        from ultralytics.cfg import get_cfg
        from ultralytics.nn.tasks import DetectionModel

        self.save_hyperparameters()
        self.model = DetectionModel(model, nc=nc, verbose=False)
        self.model.args = get_cfg()  # the loss gains (box, cls, dfl) ultralytics trains with
        self.example_input_array = torch.zeros(1, 3, imgsz, imgsz)
        self._stats: list[tuple[torch.Tensor, ...]] = []

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from ultralytics.utils.loss import v8DetectionLoss

        # Built for the model the module holds now: prunetuna swaps in each pruned candidate (same head classes).
        criterion = v8DetectionLoss(self.model)
        loss, _ = criterion(self.model(batch["img"]), batch)
        return loss.sum() / len(batch["img"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["img"]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._stats = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.score(self.model(batch["img"]), batch)

    def score(self, predictions: Any, batch: dict[str, torch.Tensor]) -> None:
        """Match one batch's predictions (the model's eval output: ``(B, 4 + nc, anchors)`` of pixel cx cy w h and
        class scores, or a tuple starting with it) to its labels, for the epoch's mAP."""
        from ultralytics.engine.validator import BaseValidator
        from ultralytics.utils.metrics import box_iou
        from ultralytics.utils.nms import non_max_suppression
        from ultralytics.utils.ops import xywh2xyxy

        images = batch["img"]
        size = images.new_tensor([images.shape[3], images.shape[2]] * 2)
        detections = non_max_suppression(
            predictions,
            conf_thres=self.hparams.conf,
            iou_thres=self.hparams.iou,
            max_det=self.hparams.max_det,
            max_time_img=60.0,  # never cut short by a busy machine: the score must not depend on load
        )
        matcher = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))  # the IoU thresholds of mAP50-95
        for i, det in enumerate(detections):
            mine = batch["batch_idx"] == i
            classes, boxes = batch["cls"][mine].view(-1), xywh2xyxy(batch["bboxes"][mine]) * size
            if len(det) and len(classes):
                correct = BaseValidator.match_predictions(matcher, det[:, 5], classes, box_iou(boxes, det[:, :4]))
            else:
                correct = torch.zeros(len(det), 10, dtype=torch.bool)
            self._stats.append((correct.cpu(), det[:, 4].cpu(), det[:, 5].cpu(), classes.cpu()))

    def epoch_map(self) -> dict[str, float]:
        """mAP50 and mAP50-95 of the batches scored since the epoch started (0 without predictions or labels)."""
        from ultralytics.utils.metrics import ap_per_class

        map50 = map50_95 = 0.0
        if self._stats:
            correct, conf, pred_cls, target_cls = (torch.cat(parts).numpy() for parts in zip(*self._stats))
            if len(correct) and len(target_cls):
                ap = ap_per_class(correct, conf, pred_cls, target_cls)[5]  # (classes present, 10 IoU thresholds)
                map50, map50_95 = float(np.mean(ap[:, 0])), float(np.mean(ap))
        return {"val/map50": map50, "val/map50_95": map50_95}

    def on_validation_epoch_end(self) -> None:
        for name, value in self.epoch_map().items():
            self.log(name, value)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

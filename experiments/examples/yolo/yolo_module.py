"""LightningModules around a stock ultralytics YOLO detector or ``-seg`` model: ultralytics' own loss, NMS and mAP.

prunetuna prunes ``self.model`` (``model.prune: model``), the ``DetectionModel`` ultralytics builds from its YAML
(``yolov8n.yaml``, ``yolo11n.yaml``, ...) or loads from a checkpoint; the module's ``training_step`` (ultralytics'
``v8DetectionLoss``) fine-tunes each candidate, and validation logs ``val/map50`` and ``val/map50_95`` computed as
ultralytics' validator does (its ``non_max_suppression``, ``box_iou``, ``match_predictions`` and
``ap_per_class``, imported, not copied: ultralytics is AGPL-3.0 and stays an optional install,
``pip install 'prunetuna[yolo]'``).

``YoloSegmenter`` does the same for a ``-seg`` model (ultralytics' ``SegmentationModel``): ``v8SegmentationLoss``,
and the masks' mAP (``val/mask_map50``, ``val/mask_map50_95``) from its ``process_mask`` and ``mask_iou`` beside the
boxes'.

Batches are what :mod:`yolo_data` yields: ``{"img", "cls", "bboxes", "batch_idx"}`` (and ``"masks"`` for a
``-seg`` model, ``YoloData(..., masks=True)``).
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
    square input side (a multiple of 32). AdamW at ``lr``; NMS at ``conf`` / ``iou`` as ultralytics' val; ``names``
    the classes' names (``export --format ultralytics`` files carry them; default ``0..nc-1``)."""

    KINDS = ("box",)  # what predictions are matched on: their boxes (YoloSegmenter: and their masks)

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
        distill_alpha: float = 0.5,
        distill_temperature: float = 2.0,
        names: list[str] | None = None,
    ) -> None:
        super().__init__()
        from ultralytics.cfg import get_cfg

        self.save_hyperparameters()
        self.model = self._build(model, nc)
        if names is not None:  # your data.yaml's class names: what YOLO(file) shows for the exported model
            if len(names) != nc:
                raise ValueError(f"names: {len(names)} names for nc={nc} classes; give one name per class")
            self.model.names = dict(enumerate(names))
        self.model.args = get_cfg()  # the loss gains (box, cls, dfl) ultralytics trains with
        self.example_input_array = torch.zeros(1, 3, imgsz, imgsz)
        self._stats: list[dict[str, torch.Tensor]] = []

    def _build(self, model: str, nc: int) -> torch.nn.Module:
        from ultralytics.nn.tasks import DetectionModel

        return DetectionModel(model, nc=nc, verbose=False)

    def _criterion(self) -> Any:
        from ultralytics.utils.loss import v8DetectionLoss

        return v8DetectionLoss(self.model)

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Built for the model the module holds now: prunetuna swaps in each pruned candidate (same head classes).
        loss, _ = self._criterion()(self.model(batch["img"]), batch)
        return loss.sum() / len(batch["img"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["img"]))
        return loss

    def distillation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, teacher_outputs: Any) -> torch.Tensor:
        """prunetuna's distillation hook (``finetune.distill``): the dense model's head outputs as soft targets beside
        ultralytics' loss, ``(1 - a) * loss + a * T^2 * (class KD + box KD)`` with this module's ``distill_alpha`` (a)
        and ``distill_temperature`` (T): class scores by binary cross-entropy against the teacher's
        ``sigmoid(score / T)`` (less the teacher's own entropy, so it is 0 when they agree), box sides by KL between
        the DFL bin distributions at T; both summed per anchor, averaged over anchors and images."""
        predictions = self.model(batch["img"])
        loss, _ = self._criterion()(predictions, batch)
        task = loss.sum() / len(batch["img"])
        teacher = next(
            o
            for o in (teacher_outputs if isinstance(teacher_outputs, tuple) else (teacher_outputs,))
            if isinstance(o, dict)
        )  # eval output: (decoded, raw head dict)
        alpha, t = self.hparams.distill_alpha, self.hparams.distill_temperature
        student_scores, teacher_scores = predictions["scores"].float() / t, teacher["scores"].float() / t
        soft = torch.sigmoid(teacher_scores)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        cls_kd = bce(student_scores, soft, reduction="none") - bce(teacher_scores, soft, reduction="none")
        images, _, anchors = predictions["boxes"].shape
        bins = self.model.model[-1].reg_max
        student_bins = predictions["boxes"].float().view(images, 4, bins, anchors) / t
        teacher_bins = teacher["boxes"].float().view(images, 4, bins, anchors) / t
        box_kd = torch.nn.functional.kl_div(
            student_bins.log_softmax(2), teacher_bins.log_softmax(2), log_target=True, reduction="none"
        )
        kd = (cls_kd.sum(1).mean() + box_kd.sum((1, 2)).mean()) * t**2
        loss = (1 - alpha) * task + alpha * kd
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["img"]))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._stats = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.score(self.model(batch["img"]), batch)

    def _nms(self, predictions: Any) -> list[torch.Tensor]:
        """ultralytics' NMS: per image, ``(n, 6 + extra)`` rows of x1 y1 x2 y2 (pixels), confidence, class, then the
        prediction's extra channels (a ``-seg`` model's mask coefficients)."""
        from ultralytics.utils.nms import non_max_suppression

        return non_max_suppression(
            predictions,
            conf_thres=self.hparams.conf,
            iou_thres=self.hparams.iou,
            max_det=self.hparams.max_det,
            nc=self.hparams.nc,  # the channels after the classes are not classes (mask coefficients)
            max_time_img=60.0,  # never cut short by a busy machine: the score must not depend on load
        )

    @staticmethod
    def _correct(det: torch.Tensor, classes: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
        """ultralytics' matching at the 10 IoU thresholds of mAP50-95: which predictions are true positives."""
        from ultralytics.engine.validator import BaseValidator

        if not len(det) or not len(classes):
            return torch.zeros(len(det), 10, dtype=torch.bool)
        matcher = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
        return BaseValidator.match_predictions(matcher, det[:, 5], classes, iou)

    def score(self, predictions: Any, batch: dict[str, torch.Tensor]) -> None:
        """Match one batch's predictions (the model's eval output: ``(B, 4 + nc, anchors)`` of pixel cx cy w h and
        class scores, or a tuple starting with it) to its labels, for the epoch's mAP."""
        detections, context = self._unpack(predictions)
        for i, det in enumerate(self._nms(detections)):
            self._stats.append(self._match(det, batch, i, context))

    def _unpack(self, predictions: Any) -> tuple[Any, Any]:
        """What NMS takes, and what else matching needs (nothing for boxes)."""
        return predictions, None

    def _match(self, det: torch.Tensor, batch: dict[str, torch.Tensor], i: int, context: Any) -> dict:
        """Image ``i``'s detections matched to its labels: true positives per IoU threshold, confidences, classes."""
        from ultralytics.utils.metrics import box_iou
        from ultralytics.utils.ops import xywh2xyxy

        images = batch["img"]
        size = images.new_tensor([images.shape[3], images.shape[2]] * 2)
        mine = batch["batch_idx"] == i
        classes, boxes = batch["cls"][mine].view(-1), xywh2xyxy(batch["bboxes"][mine]) * size
        return {
            "box": self._correct(det, classes, box_iou(boxes, det[:, :4])).cpu(),
            "conf": det[:, 4].cpu(),
            "pred_cls": det[:, 5].cpu(),
            "target_cls": classes.cpu(),
        }

    def epoch_map(self) -> dict[str, float]:
        """mAP50 and mAP50-95 of the batches scored since the epoch started (0 without predictions or labels):
        ``val/map50``, ``val/map50_95`` of the boxes (and ``val/mask_map50``, ``val/mask_map50_95`` of the masks)."""
        from ultralytics.utils.metrics import ap_per_class

        result = {}
        joined = {k: torch.cat([s[k] for s in self._stats]).numpy() for k in self._stats[0]} if self._stats else {}
        for kind in self.KINDS:
            map50 = map50_95 = 0.0
            if joined and len(joined[kind]) and len(joined["target_cls"]):
                args = (joined[kind], joined["conf"], joined["pred_cls"], joined["target_cls"])
                ap = ap_per_class(*args)[5]  # (classes present, 10 IoU thresholds)
                map50, map50_95 = float(np.mean(ap[:, 0])), float(np.mean(ap))
            prefix = "val/" if kind == "box" else f"val/{kind}_"
            result.update({f"{prefix}map50": map50, f"{prefix}map50_95": map50_95})
        return result

    def on_validation_epoch_end(self) -> None:
        for name, value in self.epoch_map().items():
            self.log(name, value)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class YoloSegmenter(YoloDetector):
    """A stock ``-seg`` model (``yolov8n-seg.yaml``, ``yolo11n-seg.yaml``, ...: ultralytics' ``SegmentationModel``,
    a Segment head with mask prototypes), trained with ultralytics' ``v8SegmentationLoss`` on batches with
    ``"masks"`` (``YoloData(..., masks=True)``); validation logs the boxes' mAP (``val/map50``, ``val/map50_95``)
    and the masks' (``val/mask_map50``, ``val/mask_map50_95``) as ultralytics' segmentation validator computes them
    (its ``process_mask`` on the prototypes, ``mask_iou``, the same matching and ``ap_per_class``)."""

    KINDS = ("box", "mask")

    def __init__(self, model: str = "yolov8n-seg.yaml", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.model.args.overlap_mask = False  # masks come one per object (YoloData's layout), not one per image
        self.model.args.task = "segment"

    def _build(self, model: str, nc: int) -> torch.nn.Module:
        from ultralytics.nn.tasks import SegmentationModel

        return SegmentationModel(model, nc=nc, verbose=False)

    def _criterion(self) -> Any:
        from ultralytics.utils.loss import v8SegmentationLoss

        return v8SegmentationLoss(self.model)

    def _unpack(self, predictions: Any) -> tuple[Any, Any]:
        """The eval output ``((B, 4 + nc + nm, anchors), prototypes (B, nm, S/4, S/4))``, possibly followed by the
        raw head outputs, or ``(detections, prototypes)`` (the head in export mode): detections and prototypes."""
        first = predictions[0]
        return first if isinstance(first, (tuple, list)) else (first, predictions[1])

    def _match(self, det: torch.Tensor, batch: dict[str, torch.Tensor], i: int, context: Any) -> dict:
        from ultralytics.utils.metrics import mask_iou
        from ultralytics.utils.ops import process_mask

        stats = super()._match(det, batch, i, context)
        truth = batch["masks"][batch["batch_idx"] == i]  # at the prototypes' resolution (S/4)
        masks = process_mask(context[i], det[:, 6:], det[:, :4], shape=tuple(batch["img"].shape[2:]))  # in each box
        iou = mask_iou(truth.flatten(1).float(), masks.flatten(1).float()) if len(det) and len(truth) else None
        stats["mask"] = self._correct(det, stats["target_cls"], iou).cpu()
        return stats

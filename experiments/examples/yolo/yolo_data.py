"""A LightningDataModule for the YOLO dataset layout: ``images/`` beside ``labels/*.txt``, named by a ``data.yaml``.

What ultralytics reads (https://docs.ultralytics.com/datasets/detect/): ``data.yaml`` names the root (``path``,
relative to the YAML file when not absolute), the ``train`` and ``val`` splits (a folder of images, a list of
folders, or a ``.txt`` listing image paths, each relative to the root) and the classes (``names``, a list or a
``{id: name}`` mapping; ``nc`` when given must agree). Each image ``.../images/<split>/x.png`` has its labels in
``.../labels/<split>/x.txt``, one object per line: ``class cx cy w h``, normalised to the image (a segmentation
polygon ``class x1 y1 x2 y2 ...`` is read as its bounding box, and as its mask with ``masks=True``). A missing label
file is an image with no objects.

Images are letterboxed to ``imgsz`` (scaled to fit, padded with grey 114, as ultralytics' validation does) and
batched as ultralytics' loss takes them: ``{"img": (B, 3, S, S) floats in 0..1, "cls": (N, 1), "bboxes": (N, 4)
normalised cx cy w h on the letterboxed square, "batch_idx": (N,)}``, and with ``masks=True`` (a ``-seg`` model)
``"masks": (N, S/4, S/4)``, each object's polygon filled at the prototypes' resolution. ``"img"`` comes first:
prunetuna takes a dict batch's first value as the model's input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset

IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}


def read_data_yaml(path: str | Path) -> dict[str, Any]:
    """``data.yaml`` with ``root`` (a Path), ``train``/``val`` (lists of image paths) and ``names`` (a list)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data: {path} does not exist; give the path of your dataset's data.yaml")
    spec = yaml.safe_load(path.read_text()) or {}
    root = Path(spec.get("path") or path.parent)
    root = root if root.is_absolute() else (path.parent / root)
    names = spec.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not names:
        raise ValueError(f"data: {path} names no classes ('names: [...]')")
    if "nc" in spec and int(spec["nc"]) != len(names):
        raise ValueError(f"data: {path} says nc: {spec['nc']} but names {len(names)} classes")
    splits = {}
    for split in ("train", "val"):
        if split not in spec:
            raise ValueError(f"data: {path} has no '{split}:' split")
        splits[split] = _images(root, spec[split])
        if not splits[split]:
            raise ValueError(f"data: {path}: the '{split}' split ({spec[split]}) holds no images")
    return {"root": root, "names": list(names), **splits}


def _images(root: Path, entry: str | list[str]) -> list[Path]:
    found: list[Path] = []
    for item in [entry] if isinstance(entry, str) else entry:
        where = Path(item) if Path(item).is_absolute() else root / item
        if where.suffix == ".txt" and where.is_file():
            lines = [line.strip() for line in where.read_text().splitlines() if line.strip()]
            found += [Path(p) if Path(p).is_absolute() else root / p for p in lines]
        elif where.is_dir():
            found += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return found


def label_path(image: Path) -> Path:
    """ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_labels(path: Path) -> np.ndarray:
    """``(n, 5)`` rows of class, cx, cy, w, h (normalised); polygons become their boxes; no file: no rows."""
    return read_objects(path)[0]


def read_objects(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rows of :func:`read_labels` and each object's outline, ``(k, 2)`` normalised x, y: its polygon, or its
    box's four corners for a ``class cx cy w h`` line."""
    rows, outlines = [], []
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            values = line.split()
            if not values:
                continue
            numbers = [float(v) for v in values]
            if len(numbers) == 5:
                cls, cx, cy, w, h = numbers
                rows.append(numbers)
                x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
                outlines.append(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float32))
            elif len(numbers) >= 7 and len(numbers) % 2 == 1:  # a polygon: class x1 y1 x2 y2 ...
                xs, ys = numbers[1::2], numbers[2::2]
                x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
                rows.append([numbers[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
                outlines.append(np.array(numbers[1:], dtype=np.float32).reshape(-1, 2))
            else:
                raise ValueError(f"{path}:{number}: expected 'class cx cy w h', got {line.strip()!r}")
    return np.array(rows, dtype=np.float32).reshape(-1, 5), outlines


MASK_RATIO = 4  # a -seg model's prototypes (and ultralytics' training masks) are 1/4 of the image side


class YoloDataset(Dataset):
    """Letterboxed images and their labels (boxes moved onto the letterboxed square); with ``masks``, each object's
    outline filled at ``imgsz / 4`` (a ``-seg`` model's prototype resolution)."""

    def __init__(self, images: list[Path], imgsz: int, masks: bool = False) -> None:
        self.images, self.imgsz, self.masks = images, imgsz, masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        image = Image.open(self.images[i]).convert("RGB")
        w, h = image.size
        scale = self.imgsz / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (self.imgsz, self.imgsz), (114, 114, 114))
        left, top = (self.imgsz - nw) // 2, (self.imgsz - nh) // 2
        canvas.paste(image.resize((nw, nh), Image.BILINEAR), (left, top))
        pixels = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        rows, outlines = read_objects(label_path(self.images[i]))
        labels = torch.from_numpy(rows)
        if len(labels):
            labels[:, 1] = (labels[:, 1] * nw + left) / self.imgsz
            labels[:, 2] = (labels[:, 2] * nh + top) / self.imgsz
            labels[:, 3] *= nw / self.imgsz
            labels[:, 4] *= nh / self.imgsz
        if not self.masks:
            return pixels, labels
        masks = torch.zeros(len(outlines), self.imgsz, self.imgsz)
        for n, outline in enumerate(outlines):  # letterboxed like the image, filled at its size
            xy = outline * (nw, nh) + (left, top) - 0.5  # PIL fills the pixels whose centres are inside
            mask = Image.new("L", (self.imgsz, self.imgsz))
            ImageDraw.Draw(mask).polygon([tuple(p) for p in xy.tolist()], fill=1)
            masks[n] = torch.from_numpy(np.asarray(mask, dtype=np.float32))
        # then 1/4 of the side, as ultralytics shrinks its training masks: a pixel is in when half its block is
        return pixels, labels, (F.avg_pool2d(masks[:, None], MASK_RATIO)[:, 0] >= 0.5).float()


def collate(items: list[tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
    """Images stacked; every object one row, with the index of its image in ``batch_idx`` (ultralytics' format);
    with masks, ``"masks"``: ``(objects, imgsz / 4, imgsz / 4)`` in the rows' order (ultralytics' ``overlap_mask:
    False`` layout)."""
    labels = [item[1] for item in items]
    every = torch.cat(labels) if labels else torch.zeros(0, 5)
    batch = {
        "img": torch.stack([item[0] for item in items]),
        "cls": every[:, :1],
        "bboxes": every[:, 1:],
        "batch_idx": torch.cat([torch.full((len(lab),), float(i)) for i, lab in enumerate(labels)]),
    }
    if items and len(items[0]) == 3:
        batch["masks"] = torch.cat([item[2] for item in items])
    return batch


class YoloData(pl.LightningDataModule):
    """The splits a ``data.yaml`` names, letterboxed to ``imgsz``; ``max_train`` / ``max_val`` keep the first N;
    ``masks``: each object's mask too (from its polygon; a box-only line fills its box), for a ``-seg`` model."""

    def __init__(
        self,
        data: str,
        imgsz: int = 128,
        batch_size: int = 16,
        num_workers: int = 0,
        max_train: int | None = None,
        max_val: int | None = None,
        masks: bool = False,
    ) -> None:
        super().__init__()
        spec = read_data_yaml(data)
        self.names = spec["names"]
        self.train_set = YoloDataset(spec["train"][:max_train], imgsz, masks)
        self.val_set = YoloDataset(spec["val"][:max_val], imgsz, masks)
        self.batch_size, self.num_workers = batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            collate_fn=collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set, batch_size=self.batch_size, shuffle=False, collate_fn=collate, num_workers=self.num_workers
        )

"""``data.builtin: image-folder``: a ``root/<class>/<image>`` tree (or ``root/train/<class>/`` and
``root/val/<class>/``).

Read with Pillow and numpy (Pillow comes with matplotlib, a dependency): no torchvision needed, since
torchvision is an optional install that must match torch. Every image is decoded once, when the data
module is built, resized (an int ``image_size``: shorter side to it, then the centre square; ``[h, w]``:
to exactly that) and kept as uint8, ``N x C x H x W`` bytes in memory; a bad file is then reported
before any training, not in the middle of a trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from prunetuna.errors import UserError
from prunetuna.workload.datasets._images import IMAGENET_MEAN, IMAGENET_STD, ImageDataModule, UInt8Images, normalization

__all__ = ["EXTENSIONS", "image_folder", "read_image"]

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
KEY = "data.kwargs.root"


def _size(image_size: int | Sequence[int]) -> tuple[int, int] | int:
    if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size > 0:
        return image_size
    if (
        isinstance(image_size, (list, tuple))
        and len(image_size) == 2
        and all(isinstance(v, int) and v > 0 for v in image_size)
    ):
        return int(image_size[0]), int(image_size[1])
    raise UserError(
        "data.kwargs.image_size: give a positive int (shorter side, then the centre square) or [height, width], got "
        f"{image_size!r}"
    )


def read_image(path: Path, size: tuple[int, int] | int, mode: str) -> np.ndarray:
    """One image as a C x H x W uint8 array, resized as the module describes."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert(mode)
    except Exception as exc:  # noqa: BLE001 - whatever Pillow raises, the file is the problem
        raise UserError(
            f"{KEY}: {path} is not a readable image ({exc.__class__.__name__}); replace or remove it"
        ) from None
    if isinstance(size, int):
        width, height = image.size
        scale = size / min(width, height)
        image = image.resize(
            (max(size, round(width * scale)), max(size, round(height * scale))), Image.Resampling.BILINEAR
        )
        left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
        image = image.crop((left, top, left + size, top + size))
    else:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _class_folders(folder: Path) -> list[Path]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(
            f"{KEY}: {folder} holds no class folders; give a folder with one sub-folder of images per class"
        )
    return classes


def _files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise UserError(
            f"{KEY}: class folder {folder} holds no images ({', '.join(EXTENSIONS)}); add images or remove the folder"
        )
    return files


def _read(items: list[tuple[Path, int]], size: tuple[int, int] | int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.stack([read_image(path, size, mode) for path, _ in items])
    return torch.from_numpy(images), torch.tensor([label for _, label in items], dtype=torch.long)


def _split(items: list[tuple[Path, int]], n_classes: int, val_fraction: float, seed: int) -> tuple[list, list]:
    """Per class, a seeded share of ``val_fraction`` of its images (at least one of two or more) to validation."""
    generator = np.random.default_rng(seed)
    train, val = [], []
    for label in range(n_classes):
        mine = [item for item in items if item[1] == label]
        order = generator.permutation(len(mine))
        n_val = min(len(mine) - 1, max(1, round(len(mine) * val_fraction))) if len(mine) > 1 else 0
        val += [mine[i] for i in order[:n_val]]
        train += [mine[i] for i in order[n_val:]]
    return train, val


def image_folder(
    root: str,
    image_size: int | list[int] = 32,
    val_fraction: float = 0.2,
    channels: int = 3,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    augment: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    seed: int = 0,
) -> ImageDataModule:
    """Images under ``root/<class>/``, split per class with ``val_fraction`` (seeded), or ``root/train/`` and
    ``root/val/``.

    Classes are the sorted folder names (label 0 is the first). ``mean``/``std`` normalize the [0, 1]
    pixels (default ImageNet's for 3 channels, 0.5 for 1); ``augment`` flips and shifts training images.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise UserError(
            f"{KEY}: {folder} {'is not a folder' if folder.exists() else 'does not exist'}; "
            "give the folder holding one sub-folder of images per class (or train/ and val/ folders of them)"
        )
    if channels not in (1, 3):
        raise UserError(f"data.kwargs.channels: 1 (grayscale) or 3 (RGB), got {channels!r}")
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"data.kwargs.val_fraction: must lie in (0, 1), got {val_fraction!r}")
    size, mode = _size(image_size), "L" if channels == 1 else "RGB"
    mean_t, std_t = normalization(
        mean, std, channels, (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
    )
    if (folder / "train").is_dir() or (folder / "val").is_dir():
        if not ((folder / "train").is_dir() and (folder / "val").is_dir()):
            raise UserError(
                f"{KEY}: {folder} has a train/ or a val/ folder but not both; give both, or one folder per class"
            )
        class_dirs = _class_folders(folder / "train")
        classes = [d.name for d in class_dirs]
        train = [(path, label) for label, d in enumerate(class_dirs) for path in _files(d)]
        val = []
        for d in _class_folders(folder / "val"):
            if d.name not in classes:
                raise UserError(
                    f"{KEY}: {d} is a class that {folder / 'train'} does not have; the classes are {', '.join(classes)}"
                )
            val += [(path, classes.index(d.name)) for path in _files(d)]
    else:
        class_dirs = _class_folders(folder)
        classes = [d.name for d in class_dirs]
        items = [(path, label) for label, d in enumerate(class_dirs) for path in _files(d)]
        train, val = _split(items, len(classes), val_fraction, seed)
        if not val:
            raise UserError(f"{KEY}: {folder} has too few images to split off validation (at least two in a class)")
    train_x, train_y = _read(train, size, mode)
    val_x, val_y = _read(val, size, mode)
    return ImageDataModule(
        UInt8Images(train_x, train_y, mean_t, std_t, augment),
        UInt8Images(val_x, val_y, mean_t, std_t),
        classes,
        batch_size,
        num_workers,
    )

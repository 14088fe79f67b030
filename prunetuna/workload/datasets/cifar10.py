"""``data.builtin: cifar10``: CIFAR-10 from its standard binary files, read as plain bytes (no pickle is ever loaded).

``cifar-10-batches-bin/data_batch_1.bin`` .. ``data_batch_5.bin`` (training) and ``test_batch.bin``
(validation): each record is one label byte (0-9) and 3,072 pixel bytes (1,024 red, 1,024 green,
1,024 blue, rows of 32), 10,000 records a file. Only the binary version is read; the "python
version" of the data set is a pickle and is refused by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from prunetuna.errors import UserError
from prunetuna.workload.datasets._images import ImageDataModule, UInt8Images, normalization

__all__ = ["CLASSES", "RECORD", "cifar10", "read_batch"]

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
RECORD = 1 + 3 * 32 * 32
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
FOLDER = "cifar-10-batches-bin"
KEY = "data.kwargs.root"


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One binary batch file as (N x 3 x 32 x 32 uint8 images, N labels)."""
    if not path.is_file():
        raise UserError(
            f"{KEY}: {path} is missing; give the folder of CIFAR-10's binary version ({FOLDER}/, "
            "data_batch_1.bin .. data_batch_5.bin and test_batch.bin)"
        )
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD:
        raise UserError(
            f"{KEY}: {path} is {raw.size} bytes, not a whole number of {RECORD}-byte CIFAR-10 records; replace the file"
        )
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise UserError(
            f"{KEY}: {path} has label {int(labels.max())} (CIFAR-10's are 0-9): not a CIFAR-10 binary batch"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def _folder(root: Path) -> Path:
    if not root.is_dir():
        raise UserError(
            f"{KEY}: {root} {'is not a folder' if root.exists() else 'does not exist'}; "
            f"give the folder holding {FOLDER}/ (or that folder itself)"
        )
    if (root / FOLDER).is_dir():
        return root / FOLDER
    if (root / "cifar-10-batches-py").is_dir() and not (root / "data_batch_1.bin").exists():
        raise UserError(
            f"{KEY}: {root} holds CIFAR-10's python version (pickles, never loaded here); "
            f"download the binary version ({FOLDER}) instead"
        )
    return root


def cifar10(
    root: str,
    train_batches: list[int] | None = None,
    max_train: int | None = None,
    max_val: int | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    augment: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    seed: int = 0,
) -> ImageDataModule:
    """Training from ``data_batch_<i>.bin`` for i in ``train_batches`` (default 1-5), validation from
    ``test_batch.bin``.

    ``max_train`` / ``max_val``: a seeded random subset of that many images (quick searches).
    """
    folder = _folder(Path(root).expanduser())
    batches = train_batches or [1, 2, 3, 4, 5]
    if not all(isinstance(i, int) and 1 <= i <= 5 for i in batches):
        raise UserError(f"data.kwargs.train_batches: numbers from 1 to 5, got {batches!r}")
    parts = [read_batch(folder / f"data_batch_{i}.bin") for i in batches]
    train_x, train_y = torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
    val_x, val_y = read_batch(folder / "test_batch.bin")
    generator = torch.Generator().manual_seed(seed)
    for key, limit in (("max_train", max_train), ("max_val", max_val)):
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise UserError(f"data.kwargs.{key}: a positive number of images, got {limit!r}")
    if max_train is not None and max_train < len(train_y):
        keep = torch.randperm(len(train_y), generator=generator)[:max_train]
        train_x, train_y = train_x[keep], train_y[keep]
    if max_val is not None and max_val < len(val_y):
        keep = torch.randperm(len(val_y), generator=generator)[:max_val]
        val_x, val_y = val_x[keep], val_y[keep]
    mean_t, std_t = normalization(mean, std, 3, (MEAN, STD))
    return ImageDataModule(
        UInt8Images(train_x, train_y, mean_t, std_t, augment),
        UInt8Images(val_x, val_y, mean_t, std_t),
        list(CLASSES),
        batch_size,
        num_workers,
    )

"""data.builtin cifar10 on binary batches the tests write: records, channel order, subsets, and bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.errors import UserError
from prunetuna.workload.datasets.cifar10 import RECORD, cifar10, read_batch

runner = CliRunner()


def _records(labels: list[int], offset: int) -> bytes:
    """One record per label: the label byte, then red, green and blue planes of 32 x 32 (values tell them apart)."""
    out = bytearray()
    for n, label in enumerate(labels):
        planes = np.stack([np.full((32, 32), (offset + n + 40 * c) % 256, dtype=np.uint8) for c in range(3)])
        planes[0, 0, 1] = 255  # row 0, column 1 of the red plane
        out += bytes([label]) + planes.tobytes()
    return bytes(out)


def _write(root: Path, per_batch: int = 4) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(_records([(i + n) % 10 for n in range(per_batch)], offset=10 * i))
    (folder / "test_batch.bin").write_bytes(_records([7, 8, 9], offset=100))
    return root


def test_binary_records_read_as_images_and_labels(tmp_path: Path) -> None:
    root = _write(tmp_path / "c")
    images, labels = read_batch(root / "cifar-10-batches-bin" / "data_batch_2.bin")
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8 and labels.tolist() == [2, 3, 4, 5]
    assert images[1, :, 5, 5].tolist() == [21, 61, 101] and images[0, 0, 0, 1] == 255 and images[0, 1, 0, 1] == 60
    data = cifar10(str(root))
    assert len(data.train_set) == 20 and len(data.val_set) == 3 and data.val_set.labels.tolist() == [7, 8, 9]
    assert data.classes[7] == "horse"
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    direct = cifar10(str(root / "cifar-10-batches-bin"), train_batches=[1, 3])  # the folder itself works too
    assert direct.train_set.labels.tolist() == [1, 2, 3, 4, 3, 4, 5, 6]
    subset = cifar10(str(root), max_train=5, max_val=2, seed=0)
    assert len(subset.train_set) == 5 and len(subset.val_set) == 2
    assert torch.equal(subset.train_set.images, cifar10(str(root), max_train=5, max_val=2, seed=0).train_set.images)
    normalized = cifar10(str(root), mean=[0.0], std=[1.0]).val_set[0][0]
    assert torch.allclose(normalized[:, 3, 3], torch.tensor([100, 140, 180]) / 255.0)


def test_bad_folders_name_the_key_and_path(tmp_path: Path) -> None:
    root = _write(tmp_path / "c")
    folder = root / "cifar-10-batches-bin"
    (folder / "data_batch_4.bin").unlink()
    (tmp_path / "py" / "cifar-10-batches-py").mkdir(parents=True)
    short = _write(tmp_path / "short")
    (short / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(b"\x01" * (RECORD + 5))
    wrong = _write(tmp_path / "wrong")
    (wrong / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(bytes([12]) + bytes(RECORD - 1))
    cases = {
        "missing root": (tmp_path / "absent", f"data.kwargs.root: {tmp_path / 'absent'} does not exist"),
        "missing batch": (root, f"data.kwargs.root: {folder / 'data_batch_4.bin'} is missing"),
        "python version": (tmp_path / "py", "holds CIFAR-10's python version (pickles, never loaded here)"),
        "torn file": (
            short,
            f"{short / 'cifar-10-batches-bin' / 'test_batch.bin'} is {RECORD + 5} bytes, not a whole number",
        ),
        "bad label": (wrong, "has label 12 (CIFAR-10's are 0-9)"),
    }
    for case, (given, fragment) in cases.items():
        with pytest.raises(UserError) as info:
            cifar10(str(given))
        assert fragment in str(info.value) and "\n" not in str(info.value), case
    config = write_config(
        tmp_path, tiny_config("bad-cifar", data={"builtin": "cifar10", "kwargs": {"root": str(root)}})
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert (
        line.startswith(f"prunetuna: error: data.kwargs.root: {folder / 'data_batch_4.bin'} is missing")
        and "\n" not in line
    )

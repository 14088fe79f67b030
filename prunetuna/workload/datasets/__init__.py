"""Image data read from disk, without downloads: ``image-folder`` (Pillow) and ``cifar10`` (its binary files)."""

from __future__ import annotations

from prunetuna.workload.datasets._images import ImageDataModule, UInt8Images
from prunetuna.workload.datasets.cifar10 import cifar10
from prunetuna.workload.datasets.image_folder import image_folder

__all__ = ["ImageDataModule", "UInt8Images", "cifar10", "image_folder"]

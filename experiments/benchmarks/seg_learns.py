"""Does the example's ``-seg`` module learn? A stock yolov8n-seg (random init) in ``YoloSegmenter``, trained dense with
Lightning on the generated digit set with outlines (``make_digits_detection.py --segments``), its box and mask mAP
logged after every epoch (the module's ``val/map50`` and ``val/mask_map50``: ultralytics' process_mask, mask_iou,
ap_per_class). A check of the example's wiring (loss, masks, metric), not a benchmark of pruning.

    .venv/bin/python experiments/benchmarks/seg_learns.py --epochs 10 --out runs/bench/seg_learns.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "experiments" / "examples" / "yolo"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolov8n-seg.yaml")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="runs/bench/seg_learns.json")
    args = parser.parse_args()

    import lightning.pytorch as pl
    import torch
    from make_digits_detection import write_digit_detection
    from yolo_data import YoloData
    from yolo_module import YoloSegmenter

    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="digits-seg-"))
    data = write_digit_detection(folder, train=args.train, val=args.val, imgsz=args.imgsz, segments=True)
    datamodule = YoloData(str(data), imgsz=args.imgsz, batch_size=args.batch_size, masks=True)
    module = YoloSegmenter(args.model, nc=10, imgsz=args.imgsz)
    history: list[dict] = []

    class Record(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:  # after val
            row = {"epoch": trainer.current_epoch, "seconds": round(time.perf_counter() - start, 1)}
            row.update({k: round(float(v), 4) for k, v in trainer.callback_metrics.items()})
            history.append(row)
            print(json.dumps(row), flush=True)

    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        callbacks=[Record()],
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule)
    result = {"args": vars(args), "torch_threads": torch.get_num_threads(), "history": history}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

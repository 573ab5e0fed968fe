"""small-cnn trained on all of Fashion-MNIST (10 classes) against the dataset's published
benchmark table (its README, shipped in Debian's dataset-fashion-mnist docs): "2 Conv <100K
parameters" reaches 0.925 test accuracy on the official t10k images. Goal: >= 0.92.

    python benchmarks/fashion_baseline.py [--epochs 15] [--width 1.0] [--augment] [--flip]
                                          [--dropout 0.2] [--batch-size 32]

Without flips, at dropout 0.2 and stopping on 300 validation images it reached 0.918. What
reaches the goal (0.933 here, 20 epochs, 90 min on 2 loaded cores):
``--epochs 30 --patience 5 --flip --dropout 0.5 --batch-size 64``.
Writes benchmarks/results/fashion_baseline.json (test accuracy, epochs run, seconds).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _results import RESULTS, machine, write_result

from edge_transfer.core.records import RunInfo, RunMetrics
from edge_transfer.train.transfer import PretrainConfig, pretrain

PUBLISHED = {"2 Conv <100K parameters": 0.925, "2 Conv ~113K parameters": 0.922,
             "MobileNet": 0.950, "ResNet18": 0.949}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--augment", action="store_true", help="shifts, zooms, rotations")
    parser.add_argument("--flip", action="store_true", help="left-right flips")
    parser.add_argument("--dropout", type=float, default=0.2, help="before the classifier")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-samples", type=int, default=9000,
                        help="validation images for early stopping (9000: the whole split)")
    parser.add_argument("--out", type=Path, default=RESULTS / "fashion_baseline.json")
    args = parser.parse_args()
    started, load_at_start = time.time(), machine()
    with tempfile.TemporaryDirectory() as tmp:
        run = pretrain(PretrainConfig(data="fashion-mnist", out=Path(tmp, "run"),
                                      epochs=args.epochs, patience=args.patience,
                                      width=args.width, augment=args.augment,
                                      flip=args.flip, dropout=args.dropout,
                                      eval_samples=args.eval_samples,
                                      batch_size=args.batch_size, verbose=2))
        metrics, info = RunMetrics.load(run), RunInfo.load(run)
        history = json.loads((run / "history.json").read_text())["pretrain"]
    result = {"command": "python benchmarks/fashion_baseline.py "
                         f"--epochs {args.epochs} --patience {args.patience} "
                         f"--width {args.width} --batch-size {args.batch_size} "
                         f"--dropout {args.dropout} --eval-samples {args.eval_samples}"
                         + "".join(f" --{flag}" for flag in ("augment", "flip")
                                   if getattr(args, flag)),
              "test_accuracy": metrics.test_accuracy, "val_accuracy": metrics.val_accuracy,
              "test_samples": metrics.test_samples,
              "val_samples": metrics.val_samples, "goal": 0.92,
              "published": PUBLISHED, "epochs_run": len(history["loss"]),
              "seconds": round(time.time() - started, 1),
              "seconds_by_phase": info.seconds_by_phase,
              "machine": load_at_start}
    write_result(args.out, result)
    print(f"small-cnn on Fashion-MNIST: test accuracy {result['test_accuracy']:.4f} "
          f"(published 2-conv <100K: 0.925; goal 0.92) after {result['epochs_run']} epochs")


if __name__ == "__main__":
    main()

"""Quantization benchmark: when int8 breaks a backbone, what diagnosis, keep-float and QAT buy.

For each registry backbone trained from random weights on digits 0-4 and fine-tuned on 5-9
at 48 px (through the CLI, as a user would): float, int8, int8-mixed (``--keep-float auto``)
and int8-qat for TFLite and ONNX, with accuracy on the validation and test splits, bytes,
ms/image (median over repeats, batch 1), and the layers kept float; plus the time of one
``diagnose`` against one int8 conversion.

    nice -n 5 python benchmarks/quantization.py [--backbones efficientnet_b0,...]
        [--work benchmarks/.quantization-runs] [--pretrain-epochs 15] [--finetune-epochs 8]

Trained runs are kept in ``--work`` and reused (delete it to retrain). Writes
``benchmarks/results/quantization.json`` (paths relative to the repository).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = {"efficientnet_b0": [], "mobilenet_v3_small": [], "mobilenet_v3_large": [],
             "mobilenet_v2": ["--width", "0.35"]}


def cli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edge_transfer", *args], env=env,
                          capture_output=True, text=True)
    print(f"  edge-transfer {args[0]} {args[1]}: exit {done.returncode} "
          f"in {time.perf_counter() - start:.0f} s", flush=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr[-2000:])


def train(backbone: str, work: Path, pretrain_epochs: int, finetune_epochs: int) -> Path:
    """digits:0-4 from random weights, then digits:5-9, at 48 px; reused when present."""
    source, target = work / backbone / "source", work / backbone / "target"
    if not (source / "extractor.keras").is_file():
        cli("pretrain", "--data", "digits:0-4", "--out", str(source), "--backbone", backbone,
            "--weights", "none", "--input-size", "48", *BACKBONES[backbone],
            "--epochs", str(pretrain_epochs), "--patience", "5", "--quiet")
    if not (target / "model.keras").is_file():
        cli("finetune", "--data", "digits:5-9", "--out", str(target), "--backbone", str(source),
            "--epochs", str(finetune_epochs), "--finetune-epochs", str(finetune_epochs),
            "--patience", "4", "--quiet")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks/.quantization-runs")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--finetune-epochs", type=int, default=8)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/quantization.json")
    args = parser.parse_args()
    for backbone in args.backbones.split(","):
        print(backbone, flush=True)
        train(backbone, args.work, args.pretrain_epochs, args.finetune_epochs)
    if args.train_only:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory flat in the number of images: finetune, export and bundle on generated image
folders of two sizes (default 3,500 and 35,000 images), each step a separate CLI process,
its peak RSS read from ``os.wait4`` (TensorFlow's own footprint included).

Images are 28x28 gray PNGs, 5 class subfolders: Fashion-MNIST's classes 5-9 when the
dataset is installed, else noise of 5 brightness levels. The fine-tune is the issue's:
mobilenet_v2 width 0.35 at 96 px from random weights, 1 epoch, no stage 2.

    python benchmarks/memory.py [--sizes 3500 35000] [--formats tflite] [--precision fp32,int8]

Writes benchmarks/results/memory.json: per size, each step's peak RSS (MB) and wall seconds,
and the ratio of the largest to the smallest size per step (goal <= 1.3, and <= 3 GB).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _results import RESULTS, machine, write_result
from _results import ROOT as REPO

FINETUNE = ["--backbone", "mobilenet_v2", "--weights", "none", "--width", "0.35",
            "--input-size", "96", "--epochs", "1", "--finetune-epochs", "0", "--quiet"]


def make_folder(folder: Path, count: int) -> str:
    """``count`` PNGs in 5 class folders; returns where the pixels came from."""
    from PIL import Image

    from edge_transfer.core.errors import DataError

    try:
        from edge_transfer.data.load import load_dataset

        source = load_dataset("fashion-mnist:5-9")
        origin = "fashion-mnist:5-9"
        names = [n.replace("/", "-") for n in source.class_names]
        per_class = count // len(names)
        picks = [np.flatnonzero(source.y == k)[:per_class] for k in range(len(names))]
    except DataError:
        source, origin, names = None, "noise", [f"c{k}" for k in range(5)]
        per_class = count // 5
    rng = np.random.default_rng(0)
    for k, name in enumerate(names):
        (folder / name).mkdir(parents=True, exist_ok=True)
        if source is not None:
            pixels = source.x.read(picks[k])[..., 0]
        else:
            pixels = np.clip(rng.normal(40 + 40 * k, 30, (per_class, 28, 28)), 0, 255)
        for i, image in enumerate(pixels.astype(np.uint8)):
            Image.fromarray(image, "L").save(folder / name / f"{i:05d}.png")
    return origin


def measure(args: list[str], cwd: Path) -> dict[str, Any]:
    """One CLI process: exit code, wall seconds, peak RSS in MB (this child only)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "edge_transfer", *args], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    row = {"exit": process.returncode, "seconds": round(time.perf_counter() - start, 1),
           "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    if process.returncode:
        row["tail"] = output.strip().splitlines()[-3:]
    print(args[0], row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3500, 35000])
    parser.add_argument("--formats", default="tflite")
    parser.add_argument("--precision", default="fp32,int8")
    parser.add_argument("--work", type=Path, help="keep folders and runs here")
    parser.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    args = parser.parse_args()
    machine_at_start = machine()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edge-transfer-memory-") as tmp:
        work = args.work or Path(tmp)
        for size in args.sizes:
            folder = work / f"images{size}"
            origin = "existing" if folder.is_dir() else make_folder(folder, size)
            run = work / f"run{size}"
            steps = {
                "finetune": measure(["finetune", "--data", str(folder), "--out", str(run),
                                     *FINETUNE], work),
                "export": measure(["export", str(run), "--formats", args.formats,
                                   "--precision", args.precision], work),
                "bundle": measure(["bundle", str(run), "--out", str(work / f"bundle{size}")],
                                  work),
            }
            rows[str(size)] = {"images": origin, **steps}
            _write(args.out, args, rows, machine_at_start)
    small, large = str(min(args.sizes)), str(max(args.sizes))
    if small != large:
        for step in ("finetune", "export", "bundle"):
            a, b = rows[small][step]["peak_rss_mb"], rows[large][step]["peak_rss_mb"]
            print(f"{step:9s} {small}: {a:8.0f} MB   {large}: {b:8.0f} MB   ratio {b / a:.2f}")
    _write(args.out, args, rows, machine_at_start)


def _write(out: Path, args: argparse.Namespace, rows: dict[str, Any],
           machine_at_start: dict[str, Any]) -> None:
    sizes = sorted(int(s) for s in rows)
    ratios = {}
    if len(sizes) > 1:
        small, large = rows[str(sizes[0])], rows[str(sizes[-1])]
        ratios = {step: round(large[step]["peak_rss_mb"] / small[step]["peak_rss_mb"], 3)
                  for step in ("finetune", "export", "bundle")}
    result = {"command": "python benchmarks/memory.py --sizes "
                         + " ".join(str(s) for s in args.sizes),
              "finetune_args": FINETUNE, "export_formats": args.formats,
              "export_precision": args.precision, "machine": machine_at_start,
              "note": "peak RSS per CLI process (os.wait4 ru_maxrss)",
              "sizes": rows, "ratio_largest_to_smallest": ratios}
    write_result(out, result)


if __name__ == "__main__":
    main()

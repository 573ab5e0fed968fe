"""Export benchmark: per variant, export seconds (median of repeats), bytes, ratio to fp32,
accuracy and Δ vs float, written as JSON.

    python benchmarks/export.py [RUN] [--repeats 3] [--out benchmarks/results/export.json]

Without RUN it trains the demo's run first (small-cnn, digits:0-4 -> digits:5-9, 5 shots).

``--parallel`` measures instead what converting variants side by side gains: every TFLite and
ONNX precision without QAT of mobilenet_v2 (width 1.0, random weights: conversion time does
not depend on the weights' values) at ``--size`` px (224 by default), each export a whole
``edge-transfer export`` command (Python and TensorFlow start-up included, as a user waits for
it), ``--jobs 1`` against ``--jobs N`` (default: as export chooses), interleaved, median of
``--repeats`` (at least 2) each. It writes the ``parallel`` section of the results file (the
rest is kept); the goal is parallel <= 0.6x sequential wall time.

    python benchmarks/export.py --parallel [--size 224] [--repeats 2] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import RESULTS, ROOT, machine, repo_path, write_result

from edge_transfer.core.records import ExportRecord, RunData, RunInfo

VARIANTS = dict(formats=("tflite", "onnx"),
                precisions=("fp32", "fp16", "dynamic", "int8", "int16x8"),
                qat=True, prune=0.5, calibration_samples=100)


def digits_run(out: Path) -> Path:
    """The demo's target run: small-cnn pretrained on digits:0-4, fine-tuned on digits:5-9."""
    from edge_transfer.train.transfer import FinetuneConfig, PretrainConfig, finetune, pretrain

    source = pretrain(PretrainConfig(data="digits:0-4", out=out / "source"))
    return finetune(FinetuneConfig(data="digits:5-9", backbone=str(source), shots=5,
                                   out=out / "target"))


def benchmark(run: Path, repeats: int) -> dict:
    from edge_transfer.export.config import ExportConfig
    from edge_transfer.export.pipeline import export_run

    machine_at_start = machine()
    results = [export_run(run, ExportConfig(**VARIANTS, out=run / f"bench-{k}"))
               for k in range(repeats)]
    last = results[-1]
    fp32 = {a.format: a.bytes for a in last.artifacts if a.spec.name == "fp32"}
    rows = []
    for artifact in last.artifacts:
        seconds = [r.get(artifact.name).seconds for r in results]
        rows.append({
            "name": artifact.name, "status": artifact.status, "reason": artifact.reason,
            "export_seconds_median": statistics.median(s for s in seconds if s is not None)
            if any(s is not None for s in seconds) else None,
            "export_seconds": seconds, "bytes": artifact.bytes,
            "gzip_bytes": artifact.gzip_bytes,
            "ratio_to_fp32": (round(artifact.bytes / fp32[artifact.format], 4)
                              if artifact.bytes and fp32.get(artifact.format) else None),
            "accuracy": artifact.accuracy,
            "delta_vs_float_points": (None if artifact.accuracy is None else
                                      round((artifact.accuracy - last.float_accuracy) * 100, 2)),
        })
    return {
        "benchmark": "export", "run": repo_path(run), "repeats": repeats,
        "float_accuracy": last.float_accuracy,
        "fine_tune_seconds": [r.preparation_seconds for r in results],
        "machine": {**machine_at_start, "processor": platform.processor()},
        "variants": rows,
    }


PARALLEL_PRECISIONS = "fp32,fp16,dynamic,int8,int16x8"
PARALLEL_BACKBONE = "mobilenet_v2"


def random_weights_run(out: Path, size: int, backbone: str = PARALLEL_BACKBONE) -> Path:
    """A run directory of ``backbone`` (width 1.0, random weights) with a 5-class head on
    digits 0-4 upscaled to ``size`` px: what export needs, without training."""
    from edge_transfer.core.keras import load
    from edge_transfer.data.load import load_dataset
    from edge_transfer.train.backbones import create
    from edge_transfer.train.models import save_keras_model
    from edge_transfer.train.runs import write_json

    dataset = load_dataset("digits:0-4", image_size=(size, size))
    built = create(backbone, (size, size, 3), weights="none", width=1.0)
    _, keras = load()
    keras.utils.set_random_seed(0)
    head = keras.layers.Dense(len(dataset.class_names), activation="softmax")
    model = keras.Model(built.extractor.input, head(built.extractor.output))
    out.mkdir(parents=True, exist_ok=True)
    save_keras_model(model, out / "model.keras")
    (out / "labels.txt").write_text("\n".join(dataset.class_names) + "\n")
    write_json(out / "preprocessing.json", built.preprocessing.to_dict())
    RunInfo(command="benchmark", data=RunData(
        spec="digits:0-4", seed=0, val_fraction=0.15, test_fraction=0.25,
        fingerprint=dataset.fingerprint())).dump(out / RunInfo.FILE_NAME)
    return out


def _export_command(run: Path, out: Path, jobs: int | None) -> dict[str, Any]:
    """One ``edge-transfer export`` of every precision, timed from outside; its timing."""
    command = [sys.executable, "-m", "edge_transfer", "export", str(run), "--formats",
               "tflite,onnx", "--precision", PARALLEL_PRECISIONS, "--out", str(out)]
    command += ["--jobs", str(jobs)] if jobs is not None else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)   # the workers' CPU time included
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not (out / ExportRecord.FILE_NAME).is_file():
        raise SystemExit(f"export failed ({done.returncode}): {done.stderr[-2000:]}")
    record = ExportRecord.load(out)
    return {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "cpu_share": round(cpu / wall, 2), "exit_code": done.returncode,
            "timing": record.timing.to_dict() if record.timing else None,
            "variants": {a.name: {"status": a.status, "seconds": a.seconds,
                                  "check_seconds": a.check_seconds, "sha256": a.sha256}
                         for a in record.artifacts}}


def parallel_benchmark(run: Path, size: int, repeats: int, jobs: int | None,
                       work: Path) -> dict[str, Any]:
    """``--jobs 1`` against parallel, interleaved (the order alternates each repeat)."""
    load = machine()
    modes = {"sequential": 1, "parallel": jobs}
    runs: dict[str, list[dict[str, Any]]] = {"sequential": [], "parallel": []}
    for k in range(repeats):
        order = list(modes) if k % 2 == 0 else list(reversed(modes))
        for mode in order:
            result = _export_command(run, work / f"{mode}-{k}", modes[mode])
            runs[mode].append(result)
            print(f"repeat {k + 1}/{repeats} {mode}: {result['wall_seconds']:.1f} s wall, "
                  f"{result['cpu_seconds']:.1f} s CPU (jobs "
                  f"{(result['timing'] or {}).get('jobs')})", flush=True)
    median = {mode: statistics.median(r["wall_seconds"] for r in rs) for mode, rs in runs.items()}
    every = [r for rs in runs.values() for r in rs]
    statuses = [{n: v["status"] for n, v in r["variants"].items()} for r in every]
    same_files = {fmt: all({n: v["sha256"] for n, v in r["variants"].items()
                            if n.startswith(fmt)} ==
                           {n: v["sha256"] for n, v in every[0]["variants"].items()
                            if n.startswith(fmt)} for r in every)
                  for fmt in ("tflite", "onnx")}
    cpu = {mode: statistics.median(r["cpu_seconds"] for r in rs) for mode, rs in runs.items()}
    return {
        "backbone": PARALLEL_BACKBONE, "width": 1.0, "weights": "random", "input_size": size,
        "formats": ["tflite", "onnx"], "precisions": PARALLEL_PRECISIONS.split(","),
        "repeats": repeats, "jobs_asked": jobs,
        "jobs_used": (runs["parallel"][0]["timing"] or {}).get("jobs"),
        "wall_seconds_median": {m: round(v, 2) for m, v in median.items()},
        "ratio_parallel_to_sequential": round(median["parallel"] / median["sequential"], 3),
        "goal": "<= 0.6",
        # CPU time of the whole command (workers included): the work done, whatever the load;
        # cpu_share per run far below 1 means other processes had the cores.
        "cpu_seconds_median": {m: round(v, 2) for m, v in cpu.items()},
        "same_statuses": all(st == statuses[0] for st in statuses),
        # byte-identical files in every run, sequential and parallel alike, per format
        "same_files": same_files,
        "machine": {**load, "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "runs": runs,
    }


def _read(path: Path) -> dict[str, Any]:
    """The results file as it is (empty when missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _num(value: float | int | None, spec: str) -> str:
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "export.json")
    parser.add_argument("--parallel", action="store_true",
                        help="measure --jobs 1 against converting side by side (see above)")
    parser.add_argument("--size", type=int, default=224, help="--parallel: input px")
    parser.add_argument("--jobs", type=int, default=None,
                        help="--parallel: worker processes (default: as export chooses)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.parallel:
        if args.repeats < 2:
            parser.error("--parallel needs --repeats 2 or more (a median of each)")
        with tempfile.TemporaryDirectory() as tmp:
            run = args.run or random_weights_run(Path(tmp) / "run", args.size)
            parallel = parallel_benchmark(run, args.size, args.repeats, args.jobs, Path(tmp))
        write_result(args.out, {**_read(args.out), "parallel": parallel})
        print(f"median wall: sequential {parallel['wall_seconds_median']['sequential']:.1f} s, "
              f"parallel ({parallel['jobs_used']} workers) "
              f"{parallel['wall_seconds_median']['parallel']:.1f} s: ratio "
              f"{parallel['ratio_parallel_to_sequential']:.3f} (goal <= 0.6; load "
              f"{parallel['machine']['load_average_1min']} at start); CPU seconds "
              f"{parallel['cpu_seconds_median']}; same statuses: {parallel['same_statuses']}, "
              f"same files: {parallel['same_files']}")
        print(f"wrote {args.out}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or digits_run(Path(tmp))
        report = benchmark(run, args.repeats)
    previous = _read(args.out).get("parallel")   # the --parallel section stays
    write_result(args.out, {**report, **({"parallel": previous} if previous else {})})
    print(f"{'variant':24} {'status':7} {'s':>7} {'bytes':>9} {'x fp32':>7} {'acc':>7} {'Δ pt':>6}")
    for row in report["variants"]:
        print(f"{row['name']:24} {row['status']:7} {_num(row['export_seconds_median'], '7.2f')} "
              f"{_num(row['bytes'], '9d')} {_num(row['ratio_to_fp32'], '7.3f')} "
              f"{_num(row['accuracy'], '7.4f')} {_num(row['delta_vs_float_points'], '+6.1f')}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

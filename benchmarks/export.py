"""Export benchmark: per variant, export seconds (median of repeats), bytes, ratio to fp32,
accuracy and Δ vs float, written as JSON.

    python benchmarks/export.py [RUN] [--repeats 3] [--out benchmarks/results/export.json]

Without RUN it trains the demo's run first (small-cnn, digits:0-4 -> digits:5-9, 5 shots).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from _results import RESULTS, ROOT, machine, repo_path, write_result

VARIANTS = dict(formats=("tflite", "onnx"),
                precisions=("fp32", "fp16", "dynamic", "int8", "int16x8"),
                qat=True, prune=0.5, calibration_samples=100)


def digits_run(out: Path) -> Path:
    """The demo's target run: small-cnn pretrained on digits:0-4, fine-tuned on digits:5-9."""
    from edge_transfer.transfer import FinetuneConfig, PretrainConfig, finetune, pretrain

    source = pretrain(PretrainConfig(data="digits:0-4", out=out / "source"))
    return finetune(FinetuneConfig(data="digits:5-9", backbone=str(source), shots=5,
                                   out=out / "target"))


def benchmark(run: Path, repeats: int) -> dict:
    from edge_transfer.export import ExportConfig, export_run

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


def _num(value: float | int | None, spec: str) -> str:
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "export.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or digits_run(Path(tmp))
        report = benchmark(run, args.repeats)
    write_result(args.out, report)
    print(f"{'variant':24} {'status':7} {'s':>7} {'bytes':>9} {'x fp32':>7} {'acc':>7} {'Δ pt':>6}")
    for row in report["variants"]:
        print(f"{row['name']:24} {row['status']:7} {_num(row['export_seconds_median'], '7.2f')} "
              f"{_num(row['bytes'], '9d')} {_num(row['ratio_to_fp32'], '7.3f')} "
              f"{_num(row['accuracy'], '7.4f')} {_num(row['delta_vs_float_points'], '+6.1f')}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export benchmark: per variant, export seconds (median of repeats), bytes, ratio to fp32,
accuracy and Δ vs float, written as JSON.

    python benchmarks/export.py [RUN] [--repeats 3] [--out benchmarks/results/export.json]

Without RUN it trains the small digits CNN of the test suite (digits:5-9, 8x8) first.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = dict(formats=("tflite", "onnx"),
                precisions=("fp32", "fp16", "dynamic", "int8", "int16x8"),
                qat=True, prune=0.5, calibration_samples=100)


def digits_run(out: Path) -> Path:
    """The test suite's digits run: a small CNN trained on digits:5-9 (8x8 gray)."""
    from edge_transfer._keras import load
    from edge_transfer.data import load_dataset, split_dataset
    from edge_transfer.preprocessing import Preprocessing
    from edge_transfer.runs import write_json

    _, keras = load()
    keras.utils.set_random_seed(0)
    spec = {"spec": "digits:5-9", "seed": 0, "val_fraction": 0.15, "test_fraction": 0.25,
            "shots": None}
    dataset = load_dataset(spec["spec"])
    splits = split_dataset(dataset, seed=0, val_fraction=0.15, test_fraction=0.25)
    pre = Preprocessing(height=8, width=8, channels=1)
    model = keras.Sequential([
        keras.layers.Input(pre.input_shape),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(dataset.num_classes, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(pre.apply(splits.train.x), splits.train.y, epochs=40, batch_size=16, verbose=0)
    model.save(out / "model.keras")
    (out / "labels.txt").write_text("\n".join(dataset.class_names) + "\n")
    pre.save(out / "preprocessing.json")
    write_json(out / "run.json", {"command": "benchmark",
                                  "data": {**spec, "fingerprint": dataset.fingerprint()}})
    return out


def benchmark(run: Path, repeats: int) -> dict:
    from edge_transfer.export import ExportConfig, export_run

    results = [export_run(run, ExportConfig(**VARIANTS, out_dir=run / f"bench-{k}"))
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
        "benchmark": "export", "run": str(run), "repeats": repeats,
        "float_accuracy": last.float_accuracy,
        "fine_tune_seconds": [r.preparation_seconds for r in results],
        "machine": {"python": platform.python_version(), "machine": platform.machine(),
                    "processor": platform.processor()},
        "variants": rows,
    }


def _num(value: float | int | None, spec: str) -> str:
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/export.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or digits_run(Path(tmp))
        report = benchmark(run, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"{'variant':24} {'status':7} {'s':>7} {'bytes':>9} {'x fp32':>7} {'acc':>7} {'Δ pt':>6}")
    for row in report["variants"]:
        print(f"{row['name']:24} {row['status']:7} {_num(row['export_seconds_median'], '7.2f')} "
              f"{_num(row['bytes'], '9d')} {_num(row['ratio_to_fp32'], '7.3f')} "
              f"{_num(row['accuracy'], '7.4f')} {_num(row['delta_vs_float_points'], '+6.1f')}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

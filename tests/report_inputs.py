"""JSON inputs of a report, written as export, bundle and validate write them (core.records).

The figures are those of a small CNN fine-tuned on digits:5-9 (8x8, 5 classes, 134 test
images): exports of every TFLite and ONNX precision, one QAT conversion that failed, and a
local validation of each good artifact. Every accuracy comes with its per-sample predictions
(:func:`predictions`): the wrong samples of a model with fewer correct include those of one
with more, as quantization errors usually do.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from edge_transfer.core.records import SampleIds
from edge_transfer.core.samples import encode

FINGERPRINT = "5d0c2b9a41e7f3c8"
LABELS = ["5", "6", "7", "8", "9"]
CLASS_SIZES = [27, 27, 27, 27, 26]           # 134 test images
SAMPLES = sum(CLASS_SIZES)
TRUE_LABELS = [i for i, size in enumerate(CLASS_SIZES) for _ in range(size)]


def sample_ids(fingerprint: str = FINGERPRINT) -> dict[str, Any]:
    """The identity of the 134 test samples (export checks, bundle sample, validation)."""
    return SampleIds.of(fingerprint, "test", TRUE_LABELS).to_dict()


def predictions(correct: int) -> str:
    """Top-1 per sample with ``correct`` right, the errors spread over the classes as in
    :func:`confusion` (the first samples of a class are the ones it gets wrong)."""
    errors = SAMPLES - correct
    out, start = [], 0
    for i, size in enumerate(CLASS_SIZES):
        wrong = errors // 5 + (1 if i < errors % 5 else 0)
        out += [(i + 3) % 5] * wrong + [i] * (size - wrong)
        start += size
    return encode(out)

# name: (bytes, gzip bytes, correct of 134); None = the conversion failed
EXPORTS: dict[str, tuple[int, int, int] | None] = {
    "tflite-fp32": (41_312, 37_904, 131),
    "tflite-fp16": (22_136, 19_820, 131),
    "tflite-dynamic": (14_540, 11_288, 131),
    "tflite-int8": (15_072, 11_960, 130),
    "tflite-int16x8": (16_288, 12_904, 131),
    "tflite-int8-qat": (15_104, 11_984, 131),
    "onnx-fp32": (39_818, 36_520, 131),
    "onnx-dynamic": (13_902, 10_870, 130),
    "onnx-int8": (14_664, 11_402, 130),
    "onnx-int8-qat": None,
}


def write_run(folder: Path, fingerprint: str = FINGERPRINT, transfer: bool = True) -> Path:
    """A run directory's JSON files (run.json with the data fingerprint, metrics.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"spec": "digits:5-9", "seed": 0, "val_fraction": 0.15, "test_fraction": 0.25,
            "shots": 10, "fingerprint": fingerprint, "skip_bad_files": False}
    (folder / "run.json").write_text(json.dumps({"command": "finetune", "data": data,
                                                 "args": {}, "versions": {}, "seed": 0}))
    metrics: dict[str, float] = {"test_accuracy": 0.9427, "val_accuracy": 0.9776}
    if transfer:
        metrics |= {"scratch_test_accuracy": 0.7181, "source_accuracy_before": 0.9866,
                    "source_accuracy_after": 0.6920}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def export_record(run: Path, fingerprint: str = FINGERPRINT) -> dict[str, Any]:
    artifacts = []
    for name, figures in EXPORTS.items():
        fmt, precision, *rest = name.split("-")
        art: dict[str, Any] = {
            "name": name, "format": fmt, "precision": precision, "qat": "qat" in rest,
            "sparsity": None, "io": "float", "file": f"model-{name}.{fmt}",
            "inputs": [{"name": "input", "shape": [-1, 8, 8, 1], "dtype": "float32",
                        "scale": None, "zero_point": None}],
            "outputs": [{"name": "probabilities", "shape": [-1, 5], "dtype": "float32",
                         "scale": None, "zero_point": None}],
            "seconds": 1.4,
        }
        if figures is None:
            art |= {"status": "failed", "file": None, "bytes": None, "gzip_bytes": None,
                    "sha256": None, "check": None, "accuracy": None,
                    "reason": "tf2onnx could not convert the QAT model: op "
                              "QuantizeAndDequantizeV4 has no ONNX mapping at opset 17"}
        else:
            size, gz, correct = figures
            accuracy = correct / SAMPLES
            art |= {"status": "ok", "reason": None, "bytes": size, "gzip_bytes": gz,
                    "sha256": hashlib.sha256(name.encode()).hexdigest(),
                    "check": {"samples": SAMPLES, "max_abs_diff": 2e-6 if precision == "fp32"
                              else 0.04, "top1_agreement": 1.0 if correct == 131 else 0.9925,
                              "accuracy": accuracy,
                              "tolerance": 1e-4 if precision == "fp32" else None,
                              "passed": True, "predictions": predictions(correct)},
                    "accuracy": accuracy}
        artifacts.append(art)
    return {"schema_version": 1, "run": str(run), "data_fingerprint": fingerprint,
            "labels": LABELS, "preprocessing": {"height": 8, "width": 8, "channels": 1,
                                                "mean": [0.0], "std": [255.0]},
            "float_accuracy": 131 / SAMPLES, "artifacts": artifacts,
            "samples": sample_ids(fingerprint), "float_predictions": predictions(131)}


def confusion(correct: int) -> list[list[int]]:
    """A 5x5 confusion matrix over the 134 images with ``correct`` on the diagonal."""
    matrix = [[0] * 5 for _ in range(5)]
    errors = SAMPLES - correct
    for i, size in enumerate(CLASS_SIZES):
        wrong = errors // 5 + (1 if i < errors % 5 else 0)
        matrix[i][i] = size - wrong
        if wrong:
            matrix[i][(i + 3) % 5] = wrong
    return matrix


def validation_record(export: dict[str, Any], fingerprint: str = FINGERPRINT,
                      gaps: dict[str, int] | None = None) -> dict[str, Any]:
    """What `validate --device local` reports for each good artifact of ``export``.

    ``gaps`` moves an artifact's device result by that many images.
    """
    rows = []
    for art in export["artifacts"]:
        if art["status"] != "ok":
            continue
        correct = round(art["accuracy"] * SAMPLES) + (gaps or {}).get(art["name"], 0)
        m = confusion(correct)
        p50 = 0.031 if art["format"] == "tflite" else 0.044
        rows.append({
            "name": art["name"], "format": art["format"], "precision": art["precision"],
            "status": "ok", "reason": None, "bytes": art["bytes"], "samples": SAMPLES,
            "accuracy": correct / SAMPLES, "workstation_accuracy": art["accuracy"],
            "predictions": predictions(correct),
            "workstation_predictions": art["check"]["predictions"],
            "per_class_accuracy": [m[i][i] / CLASS_SIZES[i] for i in range(5)],
            "confusion_matrix": m,
            "latency_ms": {"p50": p50, "p90": p50 * 1.3, "p99": p50 * 2.1},
            "throughput_fps": round(1000 / p50 * 0.9, 1), "peak_memory_mb": 61.5,
            "checks": [
                {"name": "storage", "status": "pass", "value": art["bytes"],
                 "limit": 8 * 2**30, "detail": "file size against the storage budget"},
                {"name": "memory", "status": "pass", "value": 61.5, "limit": 4096,
                 "detail": "peak memory against RAM"},
                {"name": "latency", "status": "pass", "value": p50, "limit": 50.0,
                 "detail": "p50 latency against the budget"},
                {"name": "accuracy", "status": "pass" if abs(correct / SAMPLES -
                                                              art["accuracy"]) <= 0.005
                 else "fail", "value": correct / SAMPLES, "limit": 0.005,
                 "detail": "device accuracy against the workstation's"},
            ]})
    return {"schema_version": 1,
            "device": {"name": "local", "profile": "generic-x86-64", "arch": "x86_64",
                       "emulated": False},
            "bundle": "bundle", "data_fingerprint": fingerprint, "artifacts": rows,
            "samples": sample_ids(fingerprint)}


def write_inputs(root: Path, fingerprint: str = FINGERPRINT, transfer: bool = True,
                 validation: bool = True) -> tuple[Path, Path | None]:
    """A run folder with export/export.json, and validation.json beside it."""
    run = write_run(root / "run", fingerprint, transfer)
    record = export_record(run, fingerprint)
    (run / "export").mkdir()
    (run / "export" / "export.json").write_text(json.dumps(record))
    if not validation:
        return run, None
    path = root / "validation.json"
    path.write_text(json.dumps(validation_record(record, fingerprint)))
    return run, path


def edited(report: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    """A copy of ``report`` with one artifact row changed; a changed accuracy changes the
    row's per-sample predictions to match (:func:`predictions`)."""
    out = copy.deepcopy(report)
    row = next(r for r in out["artifacts"] if r["name"] == name)
    for accuracy, kept in (("workstation_accuracy", "predictions"),
                           ("device_accuracy", "device_predictions")):
        if accuracy in changes and kept not in changes and row.get(kept) is not None:
            value = changes[accuracy]
            row[kept] = None if value is None else predictions(round(value * SAMPLES))
    row.update(changes)
    return out

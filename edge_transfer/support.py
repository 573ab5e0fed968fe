"""The backbone support matrix: measure one backbone through the whole chain, read the results.

:func:`probe` trains a registry backbone from random weights on digits 0-4 at a given input
size, then exports fp32 and int8 to TFLite and ONNX (and QAT int8 when asked), each variant
checked in its runtime. ``benchmarks/backbones.py`` runs it for every family and writes
``benchmarks/results/backbones.json``; ``edge-transfer backbones`` and the README's backbone
table are read from that file (:func:`load_matrix`, :func:`markdown_table`), never typed by hand.

>>> row = {"name": "vgg16", "family": "VGG", "input_size": 32,
...        "train": {"status": "ok", "val_accuracy": 0.96, "above_chance": True},
...        "variants": {"tflite-fp32": {"status": "ok", "accuracy": 0.96, "seconds": 3.0}}}
>>> cells(row)["tflite fp32"], cells(row)["onnx int8"]
('ok 0.96 (3 s)', '-')
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge_transfer import interrupts

RESULTS_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "backbones.json"
SOURCE_DATA = "digits:0-4"
COLUMNS = {"tflite fp32": "tflite-fp32", "tflite int8": "tflite-int8", "onnx fp32": "onnx-fp32",
           "onnx int8": "onnx-int8", "tflite qat": "tflite-int8-qat", "onnx qat": "onnx-int8-qat"}


def smallest_input(name: str) -> int:
    """The smallest square input side a registry backbone accepts."""
    from edge_transfer import backbones

    return backbones.get(name).min_size


def probe(name: str, workdir: Path, input_size: int | None = None, epochs: int = 4,
          qat: bool = True, seed: int = 0) -> dict[str, Any]:
    """Train ``name`` from random weights on digits 0-4, export and check every variant.

    Returns one row of the support matrix: ``train`` (status, val accuracy, above chance,
    seconds) and ``variants`` (per artifact: status, accuracy, seconds, reason).
    """
    from edge_transfer import backbones
    from edge_transfer.errors import EdgeTransferError, ModelError
    from edge_transfer.export import ExportConfig, export_run
    from edge_transfer.records import RunInfo, RunMetrics
    from edge_transfer.transfer import PretrainConfig, chance_warning, pretrain

    spec = backbones.get(name)
    size = input_size or spec.min_size
    row: dict[str, Any] = {"name": name, "family": spec.family, "input_size": size,
                           "epochs": epochs, "qat_measured": qat}
    run = Path(workdir) / name
    start = time.perf_counter()
    try:
        pretrain(PretrainConfig(data=SOURCE_DATA, out=run, backbone=name, weights="none",
                                input_size=size, epochs=epochs, patience=epochs, seed=seed,
                                verbose=0))
    except (EdgeTransferError, ValueError, RuntimeError) as exc:
        row["train"] = {"status": "failed", "reason": _line(exc),
                        "seconds": round(time.perf_counter() - start, 1)}
        row["variants"] = {}
        return row
    metrics = RunMetrics.load(run)
    val, train = metrics.val_accuracy, metrics.train_accuracy
    if val is None or train is None:
        raise ModelError(f"{run}/{RunMetrics.FILE_NAME} has no train/val accuracy; the "
                         "pretrain did not finish: run it again")
    # The chance test on the images val_accuracy was measured on (older runs: the val split).
    sizes = RunInfo.load(run).data.sizes
    val_size = metrics.val_samples or (sizes.val if sizes else 0)
    at_chance = chance_warning(1.0, val, 5, val_size) is not None
    row["params"] = _params(run)
    row["train"] = {"status": "ok", "val_accuracy": round(val, 4),
                    "train_accuracy": round(train, 4), "chance": 0.2,
                    "above_chance": not at_chance,
                    "seconds": round(time.perf_counter() - start, 1)}
    start = time.perf_counter()
    result = export_run(run, ExportConfig(precisions=("fp32", "int8"), qat=qat,
                                          calibration_samples=64, qat_epochs=1, seed=seed))
    row["export_seconds"] = round(time.perf_counter() - start, 1)
    row["float_accuracy"] = round(result.float_accuracy, 4)
    row["variants"] = {a.name: {"status": a.status, "accuracy": _round(a.accuracy),
                                "seconds": a.seconds, "bytes": a.bytes, "reason": a.reason}
                       for a in result.artifacts}
    return row


def _params(run: Path) -> int | None:
    from edge_transfer.models import load_keras_model

    try:
        return int(load_keras_model(run / "extractor.keras").count_params())
    except Exception as exc:
        interrupts.check(exc)
        return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def load_matrix(path: Path | None = None) -> dict[str, Any]:
    """The benchmark's results (``{"models": [...]}``); empty when it was never run."""
    path = Path(path) if path else RESULTS_FILE
    if not path.is_file():
        return {"models": [], "missing": str(path)}
    return json.loads(path.read_text())


def cells(row: dict[str, Any]) -> dict[str, str]:
    """One matrix row as short text cells: trains, then each variant column."""
    train = row.get("train", {})
    if train.get("status") == "ok":
        mark = "yes" if train.get("above_chance") else "NO (chance)"
        trains = f"{mark} {train['val_accuracy']:.2f}"
    else:
        trains = f"failed: {train.get('reason', 'not run')}" if train else "-"
    out = {"trains": trains}
    variants = row.get("variants", {})
    for column, key in COLUMNS.items():
        v = variants.get(key)
        if v is None:
            out[column] = "not run" if "qat" in key and row.get("qat_measured") is False else "-"
        elif v["status"] == "ok":
            seconds = f" ({v['seconds']:.0f} s)" if v.get("seconds") is not None else ""
            out[column] = f"ok {v['accuracy']:.2f}{seconds}"
        elif (str(v.get("reason")).startswith("accuracy") and v.get("accuracy") is not None
              and row.get("float_accuracy") is not None):
            out[column] = (f"failed: accuracy {v['accuracy']:.2f} vs float "
                           f"{row['float_accuracy']:.2f} (more than the allowed drop)")
        else:
            out[column] = f"failed: {v.get('reason') or 'unknown'}"
    return out


def markdown_table(matrix: dict[str, Any], reason_limit: int = 90) -> str:
    """The support matrix as a Markdown table (the README's backbone section)."""
    header = ["backbone", "family", "input", "params", "trains (val acc)", *COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in matrix.get("models", []):
        text = cells(row)
        values = [f"`{row['name']}`", row.get("family", ""), f"{row.get('input_size', '')} px",
                  _millions(row.get("params")),
                  *(_short(text[c], reason_limit) for c in ("trains", *COLUMNS))]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def _millions(params: int | None) -> str:
    return "-" if not params else f"{params / 1e6:.1f} M"


def _short(text: str, limit: int) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Slow: a keras.applications MobileNetV2, trained briefly on digits, exported to every variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _export_shared import weight_bytes

import exporters
from edge_transfer.export.config import ExportConfig
from edge_transfer.export.pipeline import ExportResult, export_run
from edge_transfer.runtime.metadata import read_metadata

SPEC = {"spec": "digits:5-9", "seed": 0, "val_fraction": 0.15, "test_fraction": 0.25,
        "shots": None}


def write_mobilenet_run(out: Path, *, epochs: int = 10) -> Path:
    """A run directory of a flat functional MobileNetV2 (alpha 0.35, 32x32x3) on digits:5-9."""
    from edge_transfer.core.keras import load
    from edge_transfer.core.preprocessing import Preprocessing
    from edge_transfer.data.dataset import split_dataset
    from edge_transfer.data.load import load_dataset
    from edge_transfer.train.runs import write_json

    _, keras = load()
    keras.utils.set_random_seed(0)
    dataset = load_dataset(SPEC["spec"])
    splits = split_dataset(dataset, seed=0, val_fraction=SPEC["val_fraction"],
                           test_fraction=SPEC["test_fraction"])
    pre = Preprocessing(32, 32, channels=3, mean=(127.5,), std=(127.5,))
    base = keras.applications.MobileNetV2(input_shape=pre.input_shape, alpha=0.35,
                                          weights=None, include_top=False)
    for layer in base.layers:  # momentum 0.999 leaves the statistics at init after few steps
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(base.output)
    head = keras.layers.Dense(dataset.num_classes, activation="softmax", name="classes")
    model = keras.Model(base.input, head(pooled))
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(pre.apply(splits.train.x), splits.train.y, epochs=epochs, batch_size=32,
              verbose=0)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    (out / "labels.txt").write_text("\n".join(dataset.class_names) + "\n")
    pre.save(out / "preprocessing.json")
    write_json(out / "run.json", {"command": "test", "data": {**SPEC,
                                  "fingerprint": dataset.fingerprint()}})
    accuracy = float(np.mean(
        model.predict(pre.apply(splits.val.x), verbose=0).argmax(1) == splits.val.y))
    write_json(out / "metrics.json", {"val_accuracy": accuracy})
    return out


@pytest.fixture(scope="module")
def mobilenet_export(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    run = write_mobilenet_run(tmp_path_factory.mktemp("mobilenet_run"))
    # Sparsity 0.1: this thin network, trained from scratch for a few epochs, loses most of
    # its accuracy at 0.5 in a one-epoch fine-tune (measured 0.34-0.54 vs 0.90; the check
    # rightly fails it) and ~4.5 points at 0.2, too close to the 5-point bound.
    return export_run(run, ExportConfig(
        formats=("tflite", "onnx"), precisions=("fp32", "fp16", "dynamic", "int8", "int16x8"),
        qat=True, prune=0.1, prune_precisions=("int8",), calibration_samples=32,
        qat_epochs=1))


@pytest.mark.slow
def test_mobilenet_v2_exports_to_every_variant(mobilenet_export: ExportResult) -> None:
    result = mobilenet_export
    assert result.float_accuracy >= 0.6  # trained, not chance (0.2)
    names = [a.name for a in result.artifacts]
    asked = ("fp32", "fp16", "dynamic", "int8", "int16x8")
    assert names == [f"{fmt}-{p}" for fmt in ("tflite", "onnx")  # what each exporter makes
                     for p in (*(p for p in asked if p in exporters.get(fmt).PRECISIONS),
                               "int8-qat", "int8-pruned10")]
    failed = {a.name: a.reason for a in result.artifacts if not a.ok}
    assert not failed
    for artifact in result.artifacts:
        assert read_metadata(artifact.path).labels == result.labels
    assert result.get("tflite-fp32").check.max_abs_diff <= 1e-4
    assert result.get("onnx-fp32").check.max_abs_diff <= 1e-4


@pytest.mark.slow
def test_mobilenet_v2_quantized_file_sizes(mobilenet_export: ExportResult) -> None:
    """Weights: int8 <= 0.30x, fp16 <= 0.55x of fp32. Whole files: fp16 <= 0.55x; int8 <= 0.40x,
    as a thin 32 px MobileNetV2 (alpha 0.35) stores 14k per-channel scales and int64 zero
    points (~170 KB, a quarter of its int8 file)."""
    def get(name: str) -> Path:
        return mobilenet_export.get(name).path

    weights = {p: weight_bytes(get(f"tflite-{p}")) for p in ("fp32", "fp16", "int8")}
    assert weights["int8"] <= 0.30 * weights["fp32"]
    assert weights["fp16"] <= 0.55 * weights["fp32"]
    fp32 = mobilenet_export.get("tflite-fp32").bytes
    assert mobilenet_export.get("tflite-fp16").bytes <= 0.55 * fp32
    assert mobilenet_export.get("tflite-int8").bytes <= 0.40 * fp32
    assert mobilenet_export.get("onnx-int8").bytes <= 0.45 * mobilenet_export.get("onnx-fp32").bytes

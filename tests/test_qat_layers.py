"""QAT on the layers tfmot refuses: Rescaling, hard-swish built from TFOpLambda, the
squeeze-excite Multiply (as in EfficientNet and MobileNetV3), on a small model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _small_runs import digits_splits, save_run

from edge_transfer.export import ExportConfig, export_run


def _hard_swish(keras, x):  # type: ignore[no-untyped-def]
    """As keras.applications.MobileNetV3 builds it: x * relu6(x + 3) * (1 / 6)."""
    return keras.layers.Multiply()([x, keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])


def _squeeze_excite_classifier(out: Path, keras: Any, inputs: Any, x: Any, dataset: Any,
                               splits: Any, pre: Any, epochs: int) -> Path:
    """A squeeze-excite block (the ``Multiply`` tfmot refuses), a strided conv and the
    classifier on ``x``; trained on the digits splits and saved as a run at ``out``."""
    se = keras.layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    se = keras.layers.Conv2D(16, 1, activation="sigmoid", name="se_conv")(se)
    x = keras.layers.Multiply(name="se_excite")([x, se])
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(dataset.num_classes, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(pre.apply(splits.train.x), splits.train.y, epochs=epochs, batch_size=32,
              verbose=0)
    return save_run(out, model, dataset, pre)


def write_refused_run(out: Path, size: int = 16) -> Path:
    keras, dataset, splits, pre = digits_splits(size)
    inputs = keras.Input(pre.input_shape, name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescaling")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv1")(x)
    x = _hard_swish(keras, x)
    return _squeeze_excite_classifier(out, keras, inputs, x, dataset, splits, pre, epochs=10)


@pytest.mark.slow
def test_qat_exports_what_tfmot_refuses(tmp_path: Path) -> None:
    from edge_transfer.optimize import unquantizable_layer
    from edge_transfer.runs import Run

    run = write_refused_run(tmp_path / "run")
    assert unquantizable_layer(Run.open(run).load_model()) is not None  # tfmot alone refuses
    result = export_run(run, ExportConfig(precisions=("int8",), qat=True, qat_epochs=1,
                                          out=tmp_path / "export"))
    for fmt in ("tflite", "onnx"):
        qat = result.get(f"{fmt}-int8-qat")
        assert qat.ok, qat.reason
        assert qat.accuracy >= result.float_accuracy - 0.05
        assert any("rescaling (Rescaling)" in note for note in qat.notes)
        assert any("TFOpLambda" in note for note in qat.notes)
    record = json.loads(result.path.read_text())
    row = next(a for a in record["artifacts"] if a["name"] == "tflite-int8-qat")
    assert row["notes"] and np.isfinite(row["accuracy"])


def write_raw_pixel_run(out: Path, size: int = 16) -> Path:
    """EfficientNet's stem in small: raw 0-255 input, ``Rescaling(1/255)`` in the model right
    before a convolution, squeeze-excite after it."""
    from edge_transfer.preprocessing import Preprocessing

    keras, dataset, splits, _ = digits_splits(size)
    pre = Preprocessing(size, size, channels=1, mean=(0.0,), std=(1.0,))
    inputs = keras.Input(pre.input_shape, name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="rescaling")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    return _squeeze_excite_classifier(out, keras, inputs, x, dataset, splits, pre, epochs=20)


@pytest.mark.slow
def test_qat_tflite_with_rescaling_before_a_conv_is_not_at_chance(tmp_path: Path) -> None:
    """Without a fake-quant after Rescaling, the converter folded 1/255 into the conv's
    weights and quantized them with QAT's ranges: all zero, tflite-int8-qat at chance (0.2)
    while the ONNX QAT file and PTQ were fine."""
    run = write_raw_pixel_run(tmp_path / "run")
    result = export_run(run, ExportConfig(formats=("tflite",), precisions=(), qat=True,
                                          qat_epochs=1, out=tmp_path / "export"))
    qat = result.get("tflite-int8-qat")
    assert result.float_accuracy >= 0.8
    assert qat.ok, qat.reason
    assert qat.accuracy >= result.float_accuracy - 0.05   # 11 of 225 test images
    assert any("rescaling (Rescaling)" in note for note in qat.notes)

"""QAT on the layers tfmot refuses: Rescaling, hard-swish built from TFOpLambda, the
squeeze-excite Multiply (as in EfficientNet and MobileNetV3), on a small model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _small_runs import digits_splits, save_run

from edge_transfer.export.config import ExportConfig
from edge_transfer.export.pipeline import export_run


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
    from edge_transfer.train.optimize import unquantizable_layer
    from edge_transfer.train.runs import Run

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
    from edge_transfer.core.preprocessing import Preprocessing

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
    # Trained, far above chance (0.2): 0.74 to 0.8+ with the same seed, by the number of
    # TensorFlow threads and what the process ran before (0.8 here failed now and then).
    assert result.float_accuracy >= 0.6
    assert qat.ok, qat.reason
    assert qat.accuracy >= result.float_accuracy - 0.05   # 11 of 225 test images
    assert any("rescaling (Rescaling)" in note for note in qat.notes)


def _residual_preactivation_layers(inputs: Any) -> Any:
    """RegNet's and DenseNet's pieces tfmot refused, in small: a residual ``x + skip`` (a
    ``tf.__operators__.add`` TFOpLambda of two tensors) right after a Rescaling stem, a
    BatchNormalization after a pooling (DenseNet's pre-activation, no conv before it), and
    a ``tf.maximum`` of two tensors that no QAT config takes (it must stay float)."""
    from edge_transfer.core.keras import load

    tf, keras = load()
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescaling")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    skip = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="block_conv")(skip)
    y = keras.layers.BatchNormalization(momentum=0.9, name="block_bn")(y)
    x = keras.layers.ReLU(name="block_relu")(y + skip)
    x = tf.maximum(x, skip)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="pre_bn")(x)
    return keras.layers.ReLU(name="pre_relu")(x)


def _wrapped(qat: Any) -> dict[str, str]:
    """Inner layer name -> quantize config class, for every QuantizeWrapper of ``qat``."""
    return {w.layer.name: type(w.quantize_config).__name__ for w in qat.layers
            if hasattr(w, "quantize_config")}


def test_qat_takes_residual_add_and_preactivation_batchnorm() -> None:
    """tfmot and the output-only configs alone failed on the ``x + skip`` TFOpLambda (the
    error named the Rescaling) and on a BatchNormalization after no conv; now both are
    quantized, and the layer QAT cannot take stays float with a note (a few seconds)."""
    from edge_transfer.core.keras import load
    from edge_transfer.train import qat_layers

    _, keras = load()
    inputs = keras.Input((16, 16, 1), name="image")
    x = _residual_preactivation_layers(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="classes")(x))

    # Keras numbers TFOpLambda names per process (tf.math.maximum_2 after other tests)
    add, maximum = (next(layer.name for layer in model.layers if layer.name.startswith(prefix))
                    for prefix in ("tf.__operators__.add", "tf.math.maximum"))
    qat, notes = qat_layers.annotate_and_apply(model)
    wrapped = _wrapped(qat)
    assert add in wrapped                               # the residual sum, as an Add layer
    assert wrapped["pre_bn"] == "OutputQuantizeConfig"  # pre-activation BN: output fake-quant
    assert "stem_bn" in wrapped and "block_bn" in wrapped  # folded into their convs
    assert maximum not in wrapped                       # left float ...
    assert any("left in float" in n and f"{maximum} (TFOpLambda" in n for n in notes)
    x = np.random.default_rng(0).random((4, 16, 16, 1), dtype=np.float32)
    assert qat.predict(x, verbose=0).shape == (4, 5)


def _two_outputs_model(keras: Any) -> Any:
    """A conv, then a custom layer with two outputs (tfmot's wrapper fails on it: it must be
    named, and left float), then the classifier."""

    class TwoOutputs(keras.layers.Layer):  # type: ignore[misc,name-defined]
        def call(self, inputs: Any) -> Any:
            return inputs, -inputs

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescaling")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    a, b = TwoOutputs(name="two")(x)
    x = keras.layers.Concatenate(name="both")([a, b])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="classes")(x))
    return model, {"TwoOutputs": TwoOutputs}


def test_qat_leaves_a_layer_it_fails_on_in_float_and_names_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """quantize_apply fails on a layer: that layer (not the first one tfmot has no config
    for, the Rescaling) is named, left float and QAT applied again; with no layer allowed
    to stay float, the error names it (a few seconds)."""
    from edge_transfer.core.errors import ConversionError
    from edge_transfer.core.keras import load
    from edge_transfer.train import qat_layers

    _, keras = load()
    model, custom = _two_outputs_model(keras)
    with keras.utils.custom_object_scope(custom):
        qat, notes = qat_layers.annotate_and_apply(model)
        assert "two" not in _wrapped(qat) and "conv" in _wrapped(qat)
        assert any("left in float" in n and "two (TwoOutputs)" in n for n in notes), notes
        monkeypatch.setattr(qat_layers, "MAX_FLOAT_LAYERS", 0)
        with pytest.raises(ConversionError, match=r"layer two \(TwoOutputs\)") as err:
            qat_layers.annotate_and_apply(model)
    assert "rescaling" not in str(err.value)


def write_residual_run(out: Path, size: int = 16) -> Path:
    keras, dataset, splits, pre = digits_splits(size)
    inputs = keras.Input(pre.input_shape, name="image")
    x = _residual_preactivation_layers(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(dataset.num_classes, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(pre.apply(splits.train.x), splits.train.y, epochs=10, batch_size=32, verbose=0)
    return save_run(out, model, dataset, pre)


@pytest.mark.slow
def test_qat_exports_residual_and_preactivation_with_a_float_layer(tmp_path: Path) -> None:
    """RegNet's and DenseNet's QAT failures in small, through the whole export: both QAT
    files pass their check, and export.json notes the layer left in float."""
    run = write_residual_run(tmp_path / "run")
    result = export_run(run, ExportConfig(precisions=(), qat=True, qat_epochs=1,
                                          out=tmp_path / "export"))
    assert result.float_accuracy >= 0.8
    for fmt in ("tflite", "onnx"):
        qat = result.get(f"{fmt}-int8-qat")
        assert qat.ok, qat.reason
        assert qat.accuracy >= result.float_accuracy - 0.05   # 11 of 225 test images
    record = json.loads(result.path.read_text())
    for row in (a for a in record["artifacts"] if a["qat"]):
        assert any("tf.math.maximum" in note and "left in float" in note
                   for note in row["notes"]), row


def _conv_relu_depthwise_model(keras: Any) -> Any:
    """What left MobileNetV3's ONNX QAT weights in float: a ``Conv2D`` followed by a ``ReLU``
    layer (its squeeze-excite conv; tfmot's ReLU transform dropped its weight fake-quant) and
    a depthwise conv quantized per tensor with a BatchNormalization folded into it (each
    channel on its own grid). BatchNormalization statistics are set away from 1 and 0."""
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU(name="dw_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    x = keras.layers.Conv2D(16, 1, name="se_conv")(x)
    x = keras.layers.ReLU(name="se_relu")(x)
    x = keras.layers.Flatten(name="flat")(x)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="classes")(x))
    rng = np.random.default_rng(0)
    for name in ("stem_bn", "dw_bn"):
        layer = model.get_layer(name)
        layer.set_weights([rng.uniform(0.5, 2.0, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    return model


def test_qat_conv_before_a_relu_layer_keeps_its_weight_quantization() -> None:
    """tfmot's LayerReLUQuantize gave a Conv2D followed by a ReLU layer a no-op config (float
    weights); the mended scheme fake-quantizes its kernel (a few seconds)."""
    from edge_transfer.core.keras import load
    from edge_transfer.train import qat_scheme

    _, keras = load()
    qat = qat_scheme.quantize_model(_conv_relu_depthwise_model(keras))
    se = next(w for w in qat.layers if getattr(w, "layer", None) is not None
              and w.layer.name == "se_conv")
    assert type(se.quantize_config).__name__ != "NoOpQuantizeConfig"
    assert any("kernel_min" in v.name for v in se.non_trainable_weights)


def test_qat_onnx_stores_every_conv_weight_in_int8(tmp_path: Path) -> None:
    """No float weight matrix left in a QAT .onnx (MobileNetV3's were 1.57x the int8 bytes):
    the conv before a ReLU layer is quantized, and the depthwise kernel with its folded
    BatchNormalization is found on its per-channel grid (about 15 s)."""
    import onnx as onnx_lib
    from onnx import numpy_helper

    from edge_transfer.core.keras import load
    from edge_transfer.train import optimize
    from exporters import onnx as onnx_exporter
    from exporters import onnx_graph
    from exporters.spec import KerasSource

    _, keras = load()
    model = _conv_relu_depthwise_model(keras)
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    qat = optimize.quantization_aware(model, x, rng.integers(0, 5, 64), epochs=1)
    graph = onnx_exporter.store_int8_weights(onnx_graph.convert_float(
        KerasSource(qat, tmp_path), 17)).graph
    float_weights = [init.name for init in graph.initializer
                     if init.data_type == onnx_lib.TensorProto.FLOAT and len(init.dims) >= 2
                     and numpy_helper.to_array(init).size > 1]
    assert float_weights == []
    conv_weights = {node.input[1] for node in graph.node if node.op_type == "Conv"}
    assert len(conv_weights) == 3


@pytest.mark.slow   # a QAT fine-tune and a TFLite conversion: 15-40 s
def test_qat_tflite_converts_densenet_transition_into_a_concat(tmp_path: Path) -> None:
    """DenseNet's transition (BatchNormalization, ReLU, 1x1 conv, AveragePooling2D) feeding
    a dense block's Concatenate: the TFLite converter refused the QAT model ("violate the
    same scale constraint" on the pooling); now it converts and matches QAT Keras."""
    from edge_transfer.core.keras import load
    from edge_transfer.runtime.backends import open_backend, run_float
    from edge_transfer.train import optimize
    from exporters import tflite
    from exporters.spec import Calibration, ExportSpec, KerasSource

    _, keras = load()
    layers = keras.layers
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(name="t_bn")(x)
    x = layers.ReLU(name="t_relu")(x)
    x = layers.Conv2D(8, 1, use_bias=False, name="t_conv")(x)
    x = layers.AveragePooling2D(2, strides=2, name="t_pool")(x)
    y = layers.BatchNormalization(name="b_bn")(x)
    y = layers.ReLU(name="b_relu")(y)
    y = layers.Conv2D(4, 3, padding="same", use_bias=False, name="b_conv")(y)
    x = layers.Concatenate(name="b_concat")([x, y])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, layers.Dense(5, activation="softmax", name="classes")(x))
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    qat = optimize.quantization_aware(model, x, rng.integers(0, 5, 64), epochs=1)
    data = tflite._convert(KerasSource(qat, tmp_path), ExportSpec.int8().with_qat(),
                           Calibration(x[:16], "image"))
    out = run_float(open_backend(bytes(data), format="tflite"), x)
    assert np.abs(out - qat.predict(x, verbose=0)).max() < 0.05

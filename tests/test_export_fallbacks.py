"""Export paths beyond the plain converter call: what tf2onnx and the TFLite converter refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.runtime.metadata import ModelMetadata
from exporters import Calibration, ExportSpec, KerasSource, onnx_graph
from exporters import onnx as onnx_exporter


def _grouped_conv_model() -> Any:
    from edge_transfer.core.keras import load

    _, keras = load()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, groups=4, padding="same", name="grouped")(x)  # RegNet-style
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_grouped_convolution_exports_to_onnx_runtime(tmp_path: Path, precision: str) -> None:
    """tf2onnx alone leaves a PartitionedCall node ONNX Runtime refuses (tf2onnx #2099)."""
    model = _grouped_conv_model()
    x = np.random.default_rng(0).random((16, 12, 12, 3), np.float32)
    source = KerasSource(model, tmp_path)
    meta = ModelMetadata(labels=("a", "b", "c"),
                         preprocessing=Preprocessing(height=12, width=12, channels=3))
    artifact = onnx_exporter.export(source, ExportSpec(precision),
                                    Calibration(x, source.input_name), tmp_path, metadata=meta)
    ops = {node.op_type for node in onnx.load(str(artifact.path)).graph.node}
    assert "PartitionedCall" not in ops and "Conv" in ops
    got = onnx_exporter.predict(artifact.path, x)
    tolerance = 1e-5 if precision == "fp32" else 0.05
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=tolerance)
    # the layer is back to tf_keras' own (XLA-compiled) grouped convolution afterwards
    assert "_jit_compiled_convolution_op" not in vars(model.get_layer("grouped"))


def test_exact_gelu_exports_to_onnx(tmp_path: Path) -> None:
    """ConvNeXt's exact GELU: TensorFlow computes it with Erfc, which tf2onnx cannot convert;
    it is traced with Erf instead (same values), and the layers get their GELU back."""
    from edge_transfer.core.keras import load

    _, keras = load()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3), name="image")
    x = keras.layers.Dense(8, activation="gelu", name="mlp")(inputs)
    x = keras.layers.Activation("gelu", name="act")(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(0, 2, (16, 6, 6, 3)).astype(np.float32)
    source = KerasSource(model, tmp_path)
    meta = ModelMetadata(labels=("a", "b", "c"),
                         preprocessing=Preprocessing(height=6, width=6, channels=3))
    artifact = onnx_exporter.export(source, ExportSpec.fp32(),
                                    Calibration(x, source.input_name), tmp_path, metadata=meta)
    assert "Erf" in {node.op_type for node in onnx.load(str(artifact.path)).graph.node}
    np.testing.assert_allclose(onnx_exporter.predict(artifact.path, x),
                               model.predict(x, verbose=0), atol=1e-5)
    assert model.get_layer("act").activation is keras.activations.gelu


def test_runtime_refusal_names_the_node() -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("PartitionedCall", ["x"], ["y"], name="model/g/PartitionedCall")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    reason = onnx_graph.runtime_refusal(helper.make_model(graph))
    assert reason is not None and "PartitionedCall" in reason and "model/g/" in reason


def test_tflite_needing_select_tf_ops_says_so_and_writes_nothing(tmp_path: Path) -> None:
    import tensorflow as tf

    from edge_transfer.core.errors import ConversionError
    from edge_transfer.core.keras import load
    from exporters import tflite

    _, keras = load()
    inputs = keras.Input((4,), name="image")
    x = tf.reshape(keras.layers.Dense(4)(inputs), (-1, 2, 2))
    x = tf.reshape(tf.linalg.det(x), (-1, 1))                   # MatrixDeterminant: Flex only
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    source = KerasSource(model, tmp_path)
    meta = ModelMetadata(labels=("a", "b"), preprocessing=Preprocessing(height=1, width=4))
    out = tmp_path / "out"
    out.mkdir()
    x_cal = np.random.default_rng(0).random((4, 4), np.float32)
    with pytest.raises(ConversionError, match=r"SELECT_TF_OPS.*MatrixDeterminant.*none was"):
        tflite.export(source, ExportSpec("fp32"), Calibration(x_cal, source.input_name), out,
                      metadata=meta)
    assert list(out.iterdir()) == []


def test_a_float_graph_that_fails_fails_each_onnx_variant_once(tmp_path: Path,
                                                              monkeypatch: Any) -> None:
    """tf2onnx cannot convert Svd: every path is tried for the first ONNX variant; the other
    variants fail with the same reason without converting again (each path took minutes on
    a large model)."""
    import tensorflow as tf

    from edge_transfer.core.errors import ConversionError
    from edge_transfer.core.keras import load

    _, keras = load()
    inputs = keras.Input((4,), name="image")
    x = tf.reshape(keras.layers.Dense(4)(inputs), (-1, 2, 2))
    x = tf.reshape(tf.linalg.svd(x, compute_uv=False), (-1, 2))   # Svd: no ONNX kernel
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    conversions: list[int] = []
    convert = onnx_graph.convert_float
    monkeypatch.setattr(onnx_graph, "convert_float",
                        lambda *args: conversions.append(1) or convert(*args))
    source = KerasSource(model, tmp_path)
    meta = ModelMetadata(labels=("a", "b"), preprocessing=Preprocessing(height=1, width=4))
    x_cal = np.random.default_rng(0).random((4, 4), np.float32)
    reasons = []
    for precision in ("fp32", "fp16", "int8"):
        with pytest.raises(ConversionError, match="no tf2onnx path") as failed:
            onnx_exporter.export(source, ExportSpec(precision),
                                 Calibration(x_cal, source.input_name), tmp_path, metadata=meta)
        reasons.append(str(failed.value).split(": ", 1)[1])
    assert conversions == [1]
    assert "Svd" in reasons[0] and reasons == [reasons[0]] * 3

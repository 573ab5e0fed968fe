"""The backbone registry, model files and flattening."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_transfer import backbones
from edge_transfer.errors import ModelError


def test_registry_names_and_preprocessing() -> None:
    assert backbones.available() == ("small-cnn", "mobilenet_v2", "mobilenet_v3_small",
                                     "mobilenet_v3_large", "efficientnet_b0", "resnet50")
    pre = backbones.get("mobilenet_v2").preprocessing(96, 96, 1)
    assert (pre.channels, pre.mean, pre.std) == (3, (127.5,), (127.5,))
    # MobileNetV2 wants [-1, 1]: 0 -> -1, 255 -> 1
    x = pre.apply(np.array([[[0, 255]]], np.uint8).reshape(1, 1, 2))
    assert x.min() == -1.0 and x.max() == 1.0
    resnet = backbones.get("resnet50").preprocessing(32, 32)
    assert resnet.channel_order == "bgr" and resnet.mean == (103.939, 116.779, 123.68)
    with pytest.raises(ModelError, match="small-cnn, mobilenet_v2"):
        backbones.get("vgg16")


def test_small_cnn_is_flat_and_uses_the_data_size() -> None:
    from edge_transfer.models import is_flat

    backbone = backbones.resolve("small-cnn", (8, 8, 1))
    assert backbone.preprocessing.input_shape == (8, 8, 1)
    assert backbone.extractor.input_shape == (None, 8, 8, 1)
    assert is_flat(backbone.extractor) and not backbone.pretrained


def test_flatten_nested_model_keeps_outputs() -> None:
    from edge_transfer._keras import load
    from edge_transfer.models import cut_model, flatten_model, is_flat

    _, keras = load()
    inner = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="c1"),
                              keras.layers.Flatten(name="flat")], name="inner")
    outer_in = keras.Input((8, 8, 1))
    outer = keras.Model(outer_in, keras.layers.Dense(3, name="out")(inner(outer_in)))
    assert not is_flat(outer)
    flat = flatten_model(outer)
    assert is_flat(flat) and [layer.name for layer in flat.layers][1:] == ["c1", "flat", "out"]
    x = np.random.default_rng(0).random((4, 8, 8, 1), np.float32)
    np.testing.assert_allclose(flat(x).numpy(), outer(x).numpy(), atol=1e-6)
    assert cut_model(outer, "c1").output.shape[1:] == (6, 6, 4)
    with pytest.raises(ModelError, match="no layer 'nope'"):
        cut_model(outer, "nope")


def test_load_keras_model_errors(tmp_path: Path) -> None:
    from edge_transfer._keras import load
    from edge_transfer.models import load_keras_model

    with pytest.raises(ModelError, match="does not exist"):
        load_keras_model(tmp_path / "missing.keras")
    (tmp_path / "corrupt.keras").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="corrupt"):
        load_keras_model(tmp_path / "corrupt.keras")
    _, keras = load()
    inputs = keras.Input((2,))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    lambda_model.save(tmp_path / "lambda.keras")
    with pytest.raises(ModelError, match="--unsafe"):
        load_keras_model(tmp_path / "lambda.keras")
    assert load_keras_model(tmp_path / "lambda.keras", unsafe=True) is not None


def test_cut_layer_backbone_from_a_run(digits_run: Path, tmp_path: Path) -> None:
    """A fine-tuned model.keras (with its preprocessing.json beside it) as a backbone."""
    backbone = backbones.resolve(str(digits_run / "model.keras"), (8, 8, 1),
                                 cut_layer="features")
    assert backbone.preprocessing.input_shape == (8, 8, 1)
    assert backbone.extractor.output.shape[-1] > 5


@pytest.mark.slow
def test_mobilenet_v2_weights_file_and_finetune(tmp_path: Path) -> None:
    """keras.applications MobileNetV2 (alpha 0.35, 32 px) from a weights file saved here."""
    from edge_transfer.models import is_flat, load_keras_model
    from edge_transfer.transfer import FinetuneConfig, finetune

    made = backbones.create("mobilenet_v2", (32, 32, 3), weights="none", width=0.35)
    conv = made.extractor.get_layer("Conv1")
    marked = np.full(conv.kernel.shape, 0.0125, np.float32)
    conv.kernel.assign(marked)
    weights = tmp_path / "mnv2.h5"
    made.extractor.save_weights(weights)

    loaded = backbones.create("mobilenet_v2", (32, 32, 3), weights=str(weights), width=0.35)
    np.testing.assert_array_equal(loaded.extractor.get_layer("Conv1").kernel.numpy(), marked)
    assert loaded.pretrained

    out = finetune(FinetuneConfig(
        data="digits:5-9", out=tmp_path / "run", backbone="mobilenet_v2", weights=str(weights),
        width=0.35, input_size=32, shots=10, epochs=2, finetune_epochs=2, unfreeze=10,
        batch_size=16, verbose=0))
    model = load_keras_model(out / "model.keras")
    assert is_flat(model) and model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 5)
    info = json.loads((out / "run.json").read_text())
    assert info["backbone"]["weights"] == str(weights)
    assert 0.0 <= json.loads((out / "metrics.json").read_text())["test_accuracy"] <= 1.0

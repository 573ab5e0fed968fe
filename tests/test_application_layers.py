"""Models with keras.applications' own layers load back from ``.keras`` (issue 13: ConvNeXt's
``LayerScale`` came back as the string "LayerScale", and loading failed with "'str' object is
not callable"; InceptionResNetV2's ``CustomScaleLayer`` is in the same case)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_transfer.train.models import APPLICATION_LAYERS, application_layers, load_keras_model


def test_every_unregistered_application_layer_is_a_custom_object() -> None:
    assert set(application_layers()) == {n for names in APPLICATION_LAYERS.values()
                                         for n in names}


def test_a_model_with_those_layers_saves_and_loads_back(tmp_path: Path) -> None:
    from edge_transfer.core.keras import load

    _, keras = load()
    layers = application_layers()
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", groups=1)(inputs)
    x = layers["LayerScale"](0.5, 4, name="scale")(x)
    x = layers["StochasticDepth"](0.1, name="drop")(x)
    x = layers["CustomScaleLayer"](0.17, name="mix")([x, x])
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    model.save(tmp_path / "m.keras")
    loaded = load_keras_model(tmp_path / "m.keras")
    assert [type(la).__name__ for la in loaded.layers[2:5]] == [
        "LayerScale", "StochasticDepth", "CustomScaleLayer"]
    x = np.random.default_rng(0).random((2, 6, 6, 3), np.float32)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


@pytest.mark.slow
def test_convnext_tiny_classifier_saves_and_loads_back(tmp_path: Path) -> None:
    """The smallest ConvNeXt at its smallest input (32 px), random weights, with a head:
    about 30 s (building, saving and loading 28 M parameters)."""
    from edge_transfer.train import backbones
    from edge_transfer.train.models import add_head, save_keras_model

    extractor = backbones.create("convnext_tiny", (32, 32, 3), "none").extractor
    model = add_head(extractor, 5)
    save_keras_model(model, tmp_path / "model.keras")
    loaded = load_keras_model(tmp_path / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)


def test_qat_takes_application_layers_in_a_flattened_model() -> None:
    """ConvNeXt's QAT failed with "'str' object is not callable" (tfmot rebuilds the model
    without knowing LayerScale), then with "Unknown object: '__typespec__'" (the input layer
    a flattened model had). Here: a nested stem as ConvNeXt's, a LayerScale, a residual sum.
    (ConvNeXt builds StochasticDepth only for a drop_path_rate above 0, its default.)"""
    from edge_transfer.core.keras import load
    from edge_transfer.train.models import add_head, flatten_model
    from edge_transfer.train.optimize import quantization_aware

    _, keras = load()
    layers = application_layers()
    inputs = keras.Input((8, 8, 3))
    stem = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same")],
                            name="stem")
    x = stem(inputs)
    y = layers["LayerScale"](0.5, 4, name="scale")(x)
    x = x + y   # a residual sum (TFOpLambda) as ConvNeXt's blocks end
    model = add_head(flatten_model(keras.Model(inputs, x)), 3)
    rng = np.random.default_rng(0)
    images, labels = rng.random((32, 8, 8, 3), np.float32), rng.integers(0, 3, 32)
    notes: list[str] = []
    qat = quantization_aware(model, images, labels, epochs=1, notes=notes)
    assert "scale (LayerScale)" in " ".join(notes)
    probabilities = qat.predict(images, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)

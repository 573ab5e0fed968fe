"""Models with keras.applications' own layers load back from ``.keras`` (issue 13: ConvNeXt's
``LayerScale`` came back as the string "LayerScale", and loading failed with "'str' object is
not callable"; InceptionResNetV2's ``CustomScaleLayer`` is in the same case)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_transfer.models import APPLICATION_LAYERS, application_layers, load_keras_model


def test_every_unregistered_application_layer_is_a_custom_object() -> None:
    assert set(application_layers()) == {n for names in APPLICATION_LAYERS.values()
                                         for n in names}


def test_a_model_with_those_layers_saves_and_loads_back(tmp_path: Path) -> None:
    from edge_transfer._keras import load

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
    from edge_transfer import backbones
    from edge_transfer.models import add_head, save_keras_model

    extractor = backbones.create("convnext_tiny", (32, 32, 3), "none").extractor
    model = add_head(extractor, 5)
    save_keras_model(model, tmp_path / "model.keras")
    loaded = load_keras_model(tmp_path / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)

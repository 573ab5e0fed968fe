"""diagnose reads the signs of a wrong input range and of error spread over the network
(issue 22): unit cases on made-up diagnoses, and a small model that scales its own pixels,
fed pixels already divided by 255 (the double scaling of keras.applications files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _small_runs import digits_splits, save_run

from edge_transfer.core.records import LayerDiagnosis
from edge_transfer.export.diagnose import DiagnoseConfig, diagnose_run
from edge_transfer.export.quant_signs import TensorRange, signs


def _layer(name: str, depth: int, local: float, reading: str = "adds error") -> LayerDiagnosis:
    return LayerDiagnosis(name, "CONV_2D", depth, local, local, reading)


def test_a_narrow_band_far_from_zero_names_the_input_range() -> None:
    ranges = [TensorRange("the input", 0.0, 0.0039), TensorRange("rescaling", -1.0, -0.992)]
    (line,) = signs([], ranges)
    assert line.startswith("the input has a tiny range (values in [0, 0.0039]")
    assert "pixels scaled twice" in line and "--input-range" in line


def test_few_int8_steps_is_a_sign_too() -> None:
    (line,) = signs([], [TensorRange("the input", 0.0, 255.0),
                         TensorRange("rescaling", -1.0, -0.992)])
    assert line.startswith("rescaling spans only 2 of int8's 255 steps")


def test_error_in_the_first_layers_points_at_the_input() -> None:
    layers = [_layer("rescaling", 0, 0.27), _layer("Conv", 1, 0.2)] + [
        _layer(f"conv{k}", k, 0.02) for k in range(2, 30)]
    found = signs(layers)
    assert len(found) == 1 and found[0].startswith("the first 3 layers (rescaling, Conv, conv2)")


def test_a_first_layer_with_its_own_cause_is_not_blamed_on_the_input() -> None:
    layers = [_layer("conv1", 0, 0.01), _layer("conv2", 1, 0.9, "int8 rounds 98% of its "
                                                                  "weights to zero")] + [
        _layer(f"conv{k}", k, 0.01) for k in range(3, 30)]
    assert signs(layers) == ()


def test_error_spread_over_the_network_says_float_layers_cannot_repair_it() -> None:
    rng = np.random.default_rng(0)
    layers = [_layer(f"conv{k}", k, float(x)) for k, x in enumerate(rng.uniform(0.1, 0.2, 60))]
    (line,) = signs(layers)
    assert line.startswith("the error is spread over the whole network")
    assert "no small set of float layers can repair it" in line and "--qat" in line


def test_healthy_rounding_noise_shows_no_sign() -> None:
    layers = [_layer(f"conv{k}", k, 0.01, "rounding noise only") for k in range(40)]
    assert signs(layers, [TensorRange("the input", 0.0, 1.0)]) == ()


@pytest.fixture(scope="module")
def double_scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model that begins with Rescaling(1/127.5, offset -1) (as MobileNetV3), trained on
    pixels / 255: its rescaling output spans [-1, -0.992]."""
    keras, dataset, splits, pre = digits_splits(16)
    inputs = keras.Input(pre.input_shape, name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescaling")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="Conv")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(dataset.num_classes, activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(pre.apply(splits.train.x), splits.train.y, epochs=3, batch_size=32, verbose=0)
    return save_run(tmp_path_factory.mktemp("double_scaled"), model, dataset, pre)


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_diagnose_names_the_double_scaling(double_scaled: Path, fmt: str,
                                          tmp_path: Path) -> None:
    diagnosis = diagnose_run(double_scaled, DiagnoseConfig(format=fmt, samples=16,
                                                           out=tmp_path))
    assert diagnosis.signs, [la.reading for la in diagnosis.layers[:3]]
    assert diagnosis.signs[0].startswith("rescaling spans only")
    assert "pixels scaled twice" in diagnosis.signs[0]

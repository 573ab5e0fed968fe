"""A model file's own preprocessing is respected: pixels are scaled exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_main

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.train import backbones


def _keras() -> Any:
    from edge_transfer.core.keras import load

    return load()[1]


def _body(keras: Any, x: Any) -> Any:
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.layers.Dense(3, name="logits")(x)


def _sequential(keras: Any) -> Any:
    return keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])


def _functional_arithmetic(keras: Any) -> Any:
    inputs = keras.Input((16, 16, 3))
    return keras.Model(inputs, _body(keras, inputs / 255.0 - 0.5))


def _nested(keras: Any) -> Any:
    inner = keras.Sequential([keras.Input((16, 16, 3)),
                              keras.layers.Rescaling(1 / 127.5, offset=-1),
                              keras.layers.Normalization(mean=0.1, variance=0.25),
                              keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D()],
                             name="inner")
    return keras.Sequential([keras.Input((16, 16, 3)), inner, keras.layers.Dense(3)])


@pytest.mark.parametrize(("build", "layers"), [
    (_sequential, "Rescaling 1/255"),
    (_functional_arithmetic, "tf.math.truediv + tf.math.subtract"),
    (_nested, "Rescaling 1/127.5 - 1 + Normalization"),
])
def test_a_model_that_scales_pixels_itself_is_fed_0_255(tmp_path: Path, build: Any,
                                                        layers: str) -> None:
    file = tmp_path / "model.keras"
    build(_keras()).save(file)
    backbone = backbones.resolve(str(file), (8, 8, 1))
    assert backbone.preprocessing.mean == (0.0,) and backbone.preprocessing.std == (1.0,)
    assert backbone.input is not None and backbone.input.warning is None
    assert backbone.input.line() == (f"input: the model scales pixels itself ({layers}): "
                                     "feeding 0..255")


def test_a_model_without_scaling_layers_says_what_was_assumed(tmp_path: Path) -> None:
    keras = _keras()
    inputs = keras.Input((16, 16, 3))
    file = tmp_path / "plain.keras"
    keras.Model(inputs, _body(keras, inputs)).save(file)
    backbone = backbones.resolve(str(file), (8, 8, 1))
    assert backbone.preprocessing.std == (255.0,)
    assert backbone.input is not None and backbone.input.reason == "assumed"
    assert backbone.input.line() == (
        "input: plain.keras has no scaling layer at its input; assumed it takes pixels / 255 "
        "(0..1); if it was trained on another range, pass --input-range raw|unit|symmetric")
    chosen = backbones.resolve(str(file), (8, 8, 1), input_range="symmetric")
    assert (chosen.preprocessing.mean, chosen.preprocessing.std) == ((127.5,), (127.5,))
    assert chosen.input is not None
    assert chosen.input.line() == ("input: the model takes pixels / 127.5 - 1 (-1..1), as "
                                   "--input-range says")


def test_a_record_that_scales_pixels_twice_is_kept_with_a_warning(tmp_path: Path) -> None:
    """A preprocessing.json beside the file is what the model was trained with: it is kept,
    but pixels / 255 into a model that divides by 255 again is named, with the fix."""
    file = tmp_path / "model.keras"
    _sequential(_keras()).save(file)
    Preprocessing(height=16, width=16, channels=3).save(tmp_path / "preprocessing.json")
    backbone = backbones.resolve(str(file), (8, 8, 1))
    assert backbone.preprocessing.std == (255.0,)
    assert backbone.input is not None and backbone.input.warning is not None
    assert backbone.input.warning.startswith(
        "pixels are scaled twice: pixels / 255 (0..1) is fed and the model scales them again "
        "(Rescaling 1/255), so its first layers see 0..0.00392;")
    assert "--input-range raw" in backbone.input.warning
    fixed = backbones.resolve(str(file), (8, 8, 1), input_range="raw")
    assert fixed.input is not None and fixed.input.warning is None
    assert fixed.preprocessing.std == (1.0,)


@pytest.mark.parametrize(("factory", "line"), [
    ("EfficientNetV2B0", "(Rescaling 1/255 + Normalization)"),
    ("MobileNetV3Small", "(Rescaling 1/127.5 - 1)"),
])
def test_keras_applications_saved_as_files(tmp_path: Path, factory: str, line: str) -> None:
    """The issue's case: these files divided pixels by 255 twice (the network saw 0..0.004)."""
    file = tmp_path / f"{factory}.keras"
    getattr(_keras().applications, factory)(input_shape=(32, 32, 3), include_top=False,
                                            weights=None, pooling="avg").save(file)
    backbone = backbones.resolve(str(file), (8, 8, 1))
    assert backbone.preprocessing.std == (1.0,)
    assert backbone.input is not None
    assert backbone.input.line() == f"input: the model scales pixels itself {line}: feeding 0..255"


def test_pretrain_prints_and_records_the_decision(tmp_path: Path) -> None:
    file = tmp_path / "model.keras"
    _sequential(_keras()).save(file)
    out = tmp_path / "run"
    proc = run_main("pretrain", "--data", "digits:0-4", "--backbone", str(file), "--out",
                   str(out), "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    line = "input: the model scales pixels itself (Rescaling 1/255): feeding 0..255"
    assert line in proc.stdout.splitlines()
    record = json.loads((out / "preprocessing.json").read_text())
    assert record["std"] == [1.0] and record["input"]["reason"] == "model"
    assert record["input"]["line"] == line and record["input"]["first_layer_sees"] == [0.0, 1.0]
    assert Preprocessing.load(out / "preprocessing.json").std == (1.0,)
    # finetune from that run keeps its record, and says so
    target = tmp_path / "target"
    proc = run_main("finetune", "--data", "digits:5-9", "--backbone", str(out), "--out",
                   str(target), "--epochs", "1", "--finetune-epochs", "0", "--shots", "5")
    assert proc.returncode == 0, proc.stderr
    assert (f"input: the model scales pixels itself (Rescaling 1/255): feeding 0..255, as "
            f"{out / 'preprocessing.json'} says") in proc.stdout.splitlines()


def test_input_range_is_an_option() -> None:
    proc = run_main("pretrain", "--help")
    assert "--input-range auto|raw|unit|symmetric" in " ".join(proc.stdout.split())

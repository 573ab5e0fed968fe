"""A format is one module of the registry (``exporters._FORMATS``) implementing the whole
:class:`exporters.Exporter` protocol: export, predict and the per-layer int8 quantizer that
``diagnose`` and ``--keep-float auto`` find through ``exporters.get`` (no format named
anywhere else)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import exporters
from edge_transfer.export.diagnose import DiagnoseConfig
from exporters import Calibration, Exporter, KerasSource, Quantizer

FUNCTIONS = ("export", "predict", "quantizer")


def _parameters(function: Any) -> list[tuple[str, Any, bool]]:
    """(name, kind, has a default) of each parameter but ``self``."""
    return [(p.name, p.kind, p.default is not p.empty)
            for p in inspect.signature(function).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", exporters.available())
def test_every_format_implements_the_protocol(name: str) -> None:
    module = exporters.get(name)
    members = set(Exporter.__annotations__) | set(FUNCTIONS)
    missing = [m for m in sorted(members) if not hasattr(module, m)]
    assert not missing, f"format {name} lacks {', '.join(missing)} of the Exporter protocol"
    for function in FUNCTIONS:
        assert _parameters(getattr(module, function)) == _parameters(
            getattr(Exporter, function)), f"{name}.{function} differs from the protocol"
    assert name == module.NAME
    assert DiagnoseConfig(format=name).format == name   # diagnose takes every format


def _small_model() -> Any:
    from edge_transfer.core.keras import load

    _, keras = load()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="body")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("name", exporters.available())
def test_every_format_quantizer_measures_and_keeps_layers_float(name: str,
                                                               tmp_path: Path) -> None:
    """The registry's quantizer of each format, on a small model: plain int8 runs in the
    format's own predict close to the float model, the per-layer errors name its layers,
    and a layer kept in float makes a bigger file."""
    model = _small_model()
    x = np.random.default_rng(0).random((32, 8, 8, 3), np.float32)
    module = exporters.get(name)
    q = module.quantizer(KerasSource(model, tmp_path), Calibration(x, model.input_names[0]),
                         keras_model=model)
    assert isinstance(q, Quantizer) and q.fmt == name
    int8 = q.quantize(())
    path = tmp_path / f"int8{module.SUFFIX}"
    path.write_bytes(q.serialize(int8))
    np.testing.assert_allclose(module.predict(path, x), model.predict(x, verbose=0), atol=0.05)
    layers = q.measure(x[:8], int8)
    assert {la.layer for la in layers} >= {"stem", "body"}
    assert {la.layer for la in layers} <= {layer.name for layer in model.layers}
    assert q.size(q.quantize(("body",))) > q.size(int8)

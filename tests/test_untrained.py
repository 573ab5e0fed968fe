"""A float model that learned nothing is said so at export: each of its files "passes" only by
matching it (issue 13: VGG16 from random weights stayed at chance, every variant "ok")."""

from __future__ import annotations

from pathlib import Path

from _small_runs import digits_splits, save_run

from edge_transfer.core.records import ExportRecord
from edge_transfer.export.config import ExportConfig
from edge_transfer.export.pipeline import export_run, result_notes


def _run_at_chance(out: Path) -> Path:
    """A small CNN without BatchNorm whose classifier weights are all zero: the same output
    for every image, so one class for all of them and chance accuracy."""
    keras, dataset, _, pre = digits_splits(8)
    inputs = keras.Input(pre.input_shape)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, activation="softmax", kernel_initializer="zeros")(x)
    return save_run(out, keras.Model(inputs, outputs), dataset, pre)


def test_export_of_a_model_at_chance_warns_and_records_it(tmp_path: Path) -> None:
    run = _run_at_chance(tmp_path / "run")
    result = export_run(run, ExportConfig(formats=("tflite",), precisions=("fp32",)))
    assert result.ok   # the file matches its float model: the check itself passes...
    line = result.float_health or ""
    # ...and the export says the float model is the problem, with what to change (no BN).
    assert line.startswith("the float model is at chance: accuracy "), line
    assert "only shows it matches a model that does not work" in line
    assert "no BatchNorm layer" in line and "--learning-rate" in line
    assert result_notes(result)[0] == line
    assert ExportRecord.load(result.path).float_health == line

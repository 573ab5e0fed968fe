"""A broken model always says so: below chance, a model evaluated that is not the model that
trained, and per-epoch validation at chance while training accuracy rose; each on a case built
to trigger it, with its cause and fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from conftest import run_main
from report_inputs import SAMPLES, TRUE_LABELS, sample_ids, write_inputs

from edge_transfer.core.samples import encode


def _warnings(stderr: str) -> list[str]:
    return [line.removeprefix("warning: ") for line in stderr.splitlines()
            if line.startswith("warning: ")]


def _rotated_test_labels(tmp_path: Path) -> tuple[Path, Path]:
    """digits 0-4 as .npz files: the training data, and a test set whose labels are shifted
    by one class (each image labelled as the next class): labels inconsistent with the data."""
    from edge_transfer.data.dataset import load_digits

    digits = load_digits("digits:0-4")
    x, y = np.asarray(digits.x)[..., 0], np.asarray(digits.y)
    names = np.array(digits.class_names)
    train, test = tmp_path / "train.npz", tmp_path / "test.npz"
    np.savez(train, x=x[200:], y=y[200:], class_names=names)
    np.savez(test, x=x[:200], y=(y[:200] + 1) % 5, class_names=names)
    return train, test


def test_below_chance_is_named_in_pretrain_export_and_report(tmp_path: Path) -> None:
    train, test = _rotated_test_labels(tmp_path)
    run = tmp_path / "run"
    proc = run_main("pretrain", "--data", str(train), "--test-data", str(test), "--out",
                   str(run), "--epochs", "4", "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = _warnings(proc.stderr)
    below = [line for line in lines if line.startswith("the pretrained model is below chance")]
    assert len(below) == 1, lines
    assert "is significantly below 1/5 = 20.0: its labels or its preprocessing are " \
           "inconsistent with the data" in below[0] and "labels.txt" in below[0]

    proc = run_main("export", str(run), "--formats", "onnx", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    exported = _warnings(proc.stderr)
    assert any(line.startswith("the float model is below chance") and
               "each variant's check only shows it matches a model that does not work" in line
               for line in exported), proc.stderr

    proc = run_main("report", str(run), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    reported = json.loads((tmp_path / "report" / "report.json").read_text())["warnings"]
    assert any(w.startswith("the float model is below chance") for w in reported), reported
    assert any(w.startswith("onnx-fp32 is below chance") for w in reported), reported


def test_validate_names_a_file_below_chance_on_the_device() -> None:
    from edge_transfer.commands.validate import health_lines

    shifted = encode([(label + 1) % 5 for label in TRUE_LABELS])      # every one wrong
    result = {"samples": sample_ids(),
              "artifacts": [{"name": "tflite-int8", "status": "ok", "samples": SAMPLES,
                             "per_class_accuracy": [0.0] * 5, "predictions": shifted}]}
    lines = health_lines(result)
    assert len(lines) == 1 and lines[0].startswith(
        "tflite-int8 on the device is below chance: accuracy 0.0"), lines
    result["artifacts"][0]["predictions"] = encode(TRUE_LABELS)
    assert health_lines(result) == []


def test_report_names_a_file_below_chance(tmp_path: Path) -> None:
    run, _ = write_inputs(tmp_path, validation=False)
    export = json.loads((run / "export" / "export.json").read_text())
    int8 = next(a for a in export["artifacts"] if a["name"] == "onnx-int8")
    int8["check"]["predictions"] = encode([(label + 1) % 5 for label in TRUE_LABELS])
    int8["check"]["accuracy"] = int8["accuracy"] = 0.0
    (run / "export" / "export.json").write_text(json.dumps(export))
    proc = run_main("report", str(run), "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("onnx-int8 is below chance: accuracy 0.0") and
               "labels or its preprocessing are inconsistent" in line
               for line in _warnings(proc.stderr)), proc.stderr


def _training_only_input(keras: Any) -> Any:
    """A layer that passes pixels through in training and blanks them at inference: an
    in-graph preprocessing step that acts differently in training and inference."""
    tf = __import__("tensorflow")

    @keras.saving.register_keras_serializable(package="tests")
    class TrainingOnlyInput(keras.layers.Layer):  # type: ignore[misc]
        def call(self, inputs: Any, training: Any = None) -> Any:
            return inputs if training else tf.zeros_like(inputs)

    return TrainingOnlyInput


def test_a_model_that_is_not_the_one_evaluated_is_named(tmp_path: Path) -> None:
    """Training accuracy rises while every validation pass (inference mode) sees blank images:
    per-epoch validation at chance at every epoch, and final inference accuracy far below
    the kept epoch's training-mode accuracy."""
    from edge_transfer.core.keras import load
    from edge_transfer.train.transfer import PretrainConfig, pretrain

    _, keras = load()
    layer = _training_only_input(keras)
    inputs = keras.Input((8, 8, 1))
    x = layer(name="training_only")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu", name="features")(x)
    file = tmp_path / "model.keras"
    keras.Model(inputs, keras.layers.Dense(5)(x)).save(file)
    out = pretrain(PretrainConfig(data="digits:0-4", out=tmp_path / "run", backbone=str(file),
                                  epochs=5, patience=10, learning_rate=3e-3, verbose=0))
    history = json.loads((out / "history.json").read_text())["pretrain"]
    assert max(history["accuracy"]) > 0.8, history
    assert np.allclose(history["val_accuracy"], 0.2), history
    warnings = json.loads((out / "run.json").read_text())["warnings"]
    assert any(w.startswith("validation accuracy was at chance (0.200) at each of the 5 epochs "
                            "while training accuracy rose to") and "early stopping kept epoch"
               in w for w in warnings), warnings
    assert any(w.startswith("the model evaluated is not the model that trained: on the same "
                            "541 training images it scores 0.") and "in training mode at the "
               "kept epoch" in w and "layers active only in training" in w
               and "BatchNorm" not in w for w in warnings), warnings
    from edge_transfer.train.health import training_warnings  # what export and report repeat

    assert training_warnings(out) == [f"from training: {w}" for w in warnings]


def test_the_warnings_stay_quiet_on_a_good_history() -> None:
    """The figures of a healthy run (the demo's shape) earn no warning."""
    from edge_transfer.core.records import RunMetrics
    from edge_transfer.train.health import run_warnings

    history = {"accuracy": [0.6, 0.9, 0.97], "val_accuracy": [0.7, 0.93, 0.96],
               "best_epoch": [3.0]}
    metrics = RunMetrics(train_accuracy=0.99, val_accuracy=0.96, val_samples=135,
                         test_accuracy=0.95, test_samples=225)
    assert run_warnings(history, metrics, 541, 135, 5, has_batchnorm=True) == []

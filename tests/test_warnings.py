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


def _rising(val: list[float], best: int | None = None) -> dict[str, list[float]]:
    return {"val_accuracy": val, "best_epoch": [float(best or len(val))]}


def test_still_improving_fires_only_when_the_budget_ran_out_on_a_clear_rise() -> None:
    """The rule on histories: the last epoch kept (early stopping did not end the run) and
    its validation accuracy above every earlier epoch's beyond its Wilson interval."""
    from edge_transfer.train.health import still_improving_warning

    regnety = [0.4667, 0.6593, 0.6815, 0.7556]     # regnety_002 from a .keras file, measured
    line = still_improving_warning(_rising(regnety), 135)
    assert line is not None and line.startswith(
        "validation accuracy was still rising when the 4 epochs ran out: 0.756 "), line
    assert "best before 0.681 at epoch 3; one-sided 95% bound 0.690" in line
    assert "train again with --epochs 8 or more" in line
    assert still_improving_warning(_rising(regnety[:3]), 135) is None       # +2 pt: noise
    assert still_improving_warning(_rising(regnety, best=2), 135) is None   # early stopping
    assert still_improving_warning(_rising(regnety, best=3), 135) is None   # last not kept
    assert still_improving_warning(_rising([1.0] * 60, best=60), 135) is None  # the demo's
    assert still_improving_warning(_rising([0.2, 0.9]), 135) is None      # two epochs
    assert still_improving_warning(_rising([0.3]), 135) is None           # the tiny fixtures
    assert still_improving_warning(_rising([0.4, 0.6, float("nan")]), 135) is None
    # a rise of 2 points an epoch is noise on 135 images, not on 9000
    noise = [0.70, 0.72, 0.74, 0.76]
    assert still_improving_warning(_rising(noise), 135) is None
    assert still_improving_warning(_rising(noise), 9000) is not None
    # a last up-tick back to an earlier level is not a rise
    assert still_improving_warning(_rising([0.5, 0.9, 0.8, 0.91]), 135) is None


def test_still_improving_names_the_stage_kept_and_its_option() -> None:
    """In finetune only the stage whose model is kept counts: a head stage that ran out
    while rising is followed by stage 2, which trains on."""
    from edge_transfer.core.records import RunMetrics
    from edge_transfer.train.health import run_warnings

    metrics = RunMetrics(train_accuracy=0.95, val_accuracy=0.93, val_samples=134,
                         test_accuracy=0.92, test_samples=225)
    rising, settled = _rising([0.4, 0.6, 0.9]), _rising([0.92, 0.93, 0.93], best=1)
    stages = {"stage 1 (head)": rising, "stage 2": settled}
    assert run_warnings(settled, metrics, 541, 134, 5, True, stages=stages) == []
    stages = {"stage 1 (head)": settled, "stage 2": rising}
    lines = run_warnings(rising, metrics, 541, 134, 5, True, stages=stages)
    assert len(lines) == 1 and "when the 3 epochs of stage 2 ran out" in lines[0]
    assert "--finetune-epochs 6 or more" in lines[0], lines
    head_only = {"stage 1 (head)": rising, "stage 2": {}}
    lines = run_warnings(rising, metrics, 541, 134, 5, True, stages=head_only)
    assert len(lines) == 1 and "of stage 1 (head) ran out" in lines[0]
    assert "--epochs 6 or more" in lines[0], lines


def test_a_run_cut_short_says_train_longer_and_the_longer_run_does_not(tmp_path: Path
                                                                       ) -> None:
    """A small dense model at 8x8 px learns digits 0-4 over a few epochs: stopped after 3 its
    validation accuracy is still rising (0.73 -> 0.89 on 135 images here); trained for the 6
    epochs the warning asks for, it has levelled off and nothing is said."""
    from edge_transfer.core.keras import load
    from edge_transfer.train.health import training_warnings

    _, keras = load()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="relu", name="features")(x)
    file = tmp_path / "dense.keras"
    keras.Model(inputs, keras.layers.Dense(5)(x)).save(file)
    runs = {}
    for epochs in ("3", "6"):
        runs[epochs] = run_main("pretrain", "--data", "digits:0-4", "--backbone", str(file),
                                "--out", str(tmp_path / epochs), "--epochs", epochs,
                                "--learning-rate", "2e-3", "--quiet")
        assert runs[epochs].returncode == 0, runs[epochs].stderr
    printed = _warnings(runs["3"].stderr)
    assert len(printed) == 1 and printed[0].startswith(
        "validation accuracy was still rising when the 3 epochs ran out: 0.8"), printed
    assert "train again with --epochs 6 or more" in printed[0]
    assert json.loads((tmp_path / "3" / "run.json").read_text())["warnings"] == printed
    assert training_warnings(tmp_path / "3") == [f"from training: {printed[0]}"]
    history = json.loads((tmp_path / "6" / "history.json").read_text())["pretrain"]
    assert len(history["val_accuracy"]) == 6 and max(history["val_accuracy"]) > 0.95, history
    assert _warnings(runs["6"].stderr) == [], runs["6"].stderr
    assert json.loads((tmp_path / "6" / "run.json").read_text())["warnings"] == []

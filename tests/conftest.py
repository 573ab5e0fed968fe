"""Shared fixtures: a fine-tuned digits run directory, built once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    """``edge-transfer ARGS`` in a subprocess of this interpreter, output captured."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "edge_transfer", *args],
        capture_output=True, text=True, timeout=timeout, env=env, **kwargs,
    )


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory (see edge_transfer.runs) of a small CNN trained on digits:5-9."""
    from edge_transfer._keras import load
    from edge_transfer.data import load_dataset, split_dataset
    from edge_transfer.preprocessing import Preprocessing
    from edge_transfer.runs import write_json

    _, keras = load()
    keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("digits_run")
    spec = {"spec": "digits:5-9", "seed": 0, "val_fraction": 0.15, "test_fraction": 0.25,
            "shots": None}
    dataset = load_dataset(spec["spec"])
    splits = split_dataset(dataset, seed=0)
    pre = Preprocessing(height=8, width=8, channels=1)
    model = keras.Sequential([
        keras.layers.Input(pre.input_shape),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(dataset.num_classes, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(pre.apply(splits.train.x), splits.train.y, epochs=40, batch_size=16, verbose=0)
    model.save(out / "model.keras")
    (out / "labels.txt").write_text("\n".join(dataset.class_names) + "\n")
    pre.save(out / "preprocessing.json")
    write_json(out / "run.json", {"command": "fixture",
                                  "data": {**spec, "fingerprint": dataset.fingerprint()}})
    accuracy = {name: float(np.mean(np.argmax(model.predict(pre.apply(s.x), verbose=0), 1) == s.y))
                for name, s in (("test", splits.test), ("val", splits.val))}
    write_json(out / "metrics.json", {"test_accuracy": accuracy["test"],
                                      "val_accuracy": accuracy["val"]})
    return out

"""The run directory that ``finetune`` writes and every later step reads.

    RUN/model.keras          tf_keras model: float32 input (N, H, W, C) already preprocessed,
                             softmax probabilities (N, classes) out
    RUN/labels.txt           one class name per line, in output order
    RUN/preprocessing.json   :class:`~edge_transfer.core.preprocessing.Preprocessing`
    RUN/run.json             :class:`~edge_transfer.core.records.RunInfo`: command, every argument,
                             versions, seed, data spec + fingerprint, seconds, warnings
    RUN/metrics.json         :class:`~edge_transfer.core.records.RunMetrics`: test_accuracy,
                             val_accuracy, ... (fractions in [0, 1])
    RUN/history.json         per-epoch training history of each stage

``Run.info.data`` (:class:`~edge_transfer.core.records.RunData`) holds what reproduces the
splits: ``spec``, ``seed``, ``val_fraction``, ``test_fraction``, ``shots``, ``fingerprint``.

Not run as a doctest (it needs a run directory; tests/test_transfer.py trains one):

>>> run = Run.open("runs/target")                        # doctest: +SKIP
>>> run.labels, run.preprocessing.input_shape            # doctest: +SKIP
(('5', '6', '7', '8', '9'), (16, 16, 1))
>>> x, y = run.sample_arrays("val", 500)                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.atomic import write_text_atomic
from edge_transfer.core.errors import DataError, ModelError, UserError
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records.run import RunInfo, RunMetrics
from edge_transfer.data.dataset import Splits, split_dataset, stratified_sample
from edge_transfer.data.load import load_dataset

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
PREPROCESSING_FILE = "preprocessing.json"
RUN_FILE = RunInfo.FILE_NAME
METRICS_FILE = RunMetrics.FILE_NAME
HISTORY_FILE = "history.json"
SOURCE_HEAD_FILE = "source_head.keras"      # pretrain's head, for finetune --source-data


# Every package whose version can change a trained model, an exported file or a measurement.
VERSIONED_PACKAGES = (
    "edge-transfer", "tensorflow", "tf-keras", "tensorflow-model-optimization", "tf2onnx",
    "onnx", "onnxconverter-common", "onnxruntime", "ai-edge-litert", "numpy", "pillow",
    "scikit-learn",
)


def versions() -> dict[str, str]:
    """Python, the platform and each of ``VERSIONED_PACKAGES`` ("missing" when not installed).

    >>> sorted(versions())[:3]
    ['ai-edge-litert', 'edge-transfer', 'machine']
    """
    import platform
    from importlib import metadata

    found = {"python": platform.python_version(), "machine": platform.machine(),
             "system": platform.system()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def write_json(path: Path, data: Any, parents: bool = False) -> None:
    """Write JSON to a temporary name, then rename it into place (never half-written);
    ``parents=True`` creates missing folders first."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    write_text_atomic(path, text, parents=parents)


def output_file(path: str | Path, option: str) -> Path:
    """Check an output file option before the work starts (nothing is created yet): not a
    folder, and its nearest existing folder is writable (missing folders are made on write).

    >>> output_file("/", "--json")
    Traceback (most recent call last):
    ...
    edge_transfer.core.errors.UserError: --json / is a folder; give a file name such as out.json
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name such as out.json")
    existing = path.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: {existing} is not a writable folder; give a path "
                        "in a writable folder")
    return path



@dataclass(frozen=True)
class Run:
    """A finished fine-tuning run directory."""

    path: Path

    @classmethod
    def open(cls, path: str | Path) -> Run:
        path = Path(path)
        if not path.is_dir():
            raise ModelError(
                f"{path} is not a run directory; create one with `edge-transfer finetune`"
            )
        missing = [f for f in (MODEL_FILE, LABELS_FILE, PREPROCESSING_FILE, RUN_FILE)
                   if not (path / f).is_file()]
        if missing:
            raise ModelError(
                f"{path} is not a finished run: missing {', '.join(missing)}; "
                "run `edge-transfer finetune --out` to create it"
            )
        run = cls(path)
        run.info  # noqa: B018 - a malformed run.json fails here, before any heavy work
        return run

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @cached_property
    def labels(self) -> tuple[str, ...]:
        return tuple((self.path / LABELS_FILE).read_text().splitlines())

    @cached_property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.load(self.path / PREPROCESSING_FILE)

    @cached_property
    def info(self) -> RunInfo:
        """run.json (ModelError naming the fix when it is malformed)."""
        return RunInfo.load(self.path)

    @property
    def metrics(self) -> RunMetrics:
        """metrics.json; no figures (every field None) when the run has none."""
        path = self.path / METRICS_FILE
        return RunMetrics.load(path) if path.is_file() else RunMetrics()

    @property
    def data_fingerprint(self) -> str:
        return self.info.data.fingerprint

    @cached_property
    def splits(self) -> Splits:
        """The run's own train/val/test splits, rebuilt from the data spec and seed."""
        data = self.info.data
        pre = self.preprocessing
        dataset = load_dataset(data.spec, image_size=(pre.height, pre.width),
                               skip_bad_files=data.skip_bad_files,
                               val_data=data.val_data, test_data=data.test_data)
        if dataset.fingerprint() != data.fingerprint:
            raise DataError(
                f"the data at {data.spec} changed since this run was trained "
                f"(fingerprint {dataset.fingerprint()} != {data.fingerprint}); "
                "train again, or restore the original data"
            )
        return split_dataset(dataset, seed=data.seed, val_fraction=data.val_fraction,
                             test_fraction=data.test_fraction, shots=data.shots)

    def split_arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A split as model input (float32, preprocessed) and integer labels, whole in
        memory: for small data and tests only. The product reads :meth:`sample_arrays` (N
        images) or streams a split (``tfdata.from_dataset``, ``export.CheckData``)."""
        split = self.splits.get(name)
        return self.preprocessing.apply(split.x.read()), split.y

    def sample_arrays(self, name: str, count: int,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """At most ``count`` images of a split, a fixed stratified sample (each class in its
        share, seeded; the whole split when it is no larger), as model input and labels.
        Only those images are read."""
        split = stratified_sample(self.splits.get(name), count, seed)
        return self.preprocessing.apply(split.x.read()), split.y

    def load_model(self, unsafe_load: bool = False) -> Any:
        """The tf_keras model (imports TensorFlow), in Keras' safe mode unless ``unsafe_load``."""
        from edge_transfer.train.models import load_keras_model

        return load_keras_model(self.model_path, unsafe_load=unsafe_load)

"""``EdgeModel``: one self-describing .tflite / .onnx file, ready to classify raw pixels.

Not run as a doctest (it needs an exported model file; tests/test_runtime.py exports one):

>>> model = EdgeModel.load("model-int8.tflite", threads=2)        # doctest: +SKIP
>>> model.predict(images, top_k=3).labels[:2]                     # doctest: +SKIP
('7', '5')
>>> model.evaluate(x, y).accuracy                                 # doctest: +SKIP
0.973
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core import interrupts
from edge_transfer.core.errors import DataError, ModelError, one_line
from edge_transfer.core.preprocessing import Preprocessing, as_uint8_batch
from edge_transfer.runtime.backends import (
    Backend,
    LiteRTBackend,
    OnnxBackend,
    TensorInfo,
    read_model_bytes,
)
from edge_transfer.runtime.metadata import (
    ModelMetadata,
    check_tflite_weights,
    read_from_onnx_map,
    read_from_tflite,
)

FORMATS = {".tflite": "tflite", ".onnx": "onnx"}


@dataclass(frozen=True, eq=False)
class Prediction:
    """Class probabilities (N, classes) and the top classes of each image, best first."""

    probabilities: np.ndarray
    labels_all: tuple[str, ...] = field(repr=False)
    top_k: int = 1

    @property
    def indices(self) -> np.ndarray:
        """The predicted class index of each image, (N,)."""
        return self.probabilities.argmax(axis=1)

    @property
    def labels(self) -> tuple[str, ...]:
        """The predicted class name of each image."""
        return tuple(self.labels_all[i] for i in self.indices)

    @property
    def top_indices(self) -> np.ndarray:
        """(N, top_k) class indices, most probable first."""
        k = min(self.top_k, self.probabilities.shape[1])
        return np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]

    def top(self) -> list[list[tuple[str, float]]]:
        """Per image, ``[(label, probability), ...]`` for the top_k classes."""
        return [[(self.labels_all[i], float(p[i])) for i in row]
                for row, p in zip(self.top_indices, self.probabilities, strict=True)]


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and speed of a model on labelled images (fractions, milliseconds, MB)."""

    samples: int
    accuracy: float
    per_class_accuracy: tuple[float | None, ...]
    confusion_matrix: np.ndarray
    latency_ms: dict[str, float]
    throughput_fps: float
    peak_memory_mb: float
    predictions: np.ndarray | None = None   # top-1 class index per sample
    latency: dict[str, Any] | None = None   # how latency_ms was measured (runtime.latency)

    def to_dict(self) -> dict[str, Any]:
        from edge_transfer.core.samples import encode

        return {
            "predictions": None if self.predictions is None else encode(self.predictions),
            "samples": self.samples, "accuracy": self.accuracy,
            "per_class_accuracy": list(self.per_class_accuracy),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "latency_ms": dict(self.latency_ms), "throughput_fps": self.throughput_fps,
            "peak_memory_mb": self.peak_memory_mb, "latency": self.latency,
        }


class EdgeModel:
    """A classifier file on LiteRT (.tflite) or ONNX Runtime (.onnx), no TensorFlow needed."""

    def __init__(self, path: Path, backend: Backend, metadata: ModelMetadata) -> None:
        self.path = path
        self.backend = backend
        self.labels = metadata.labels
        self.preprocessing: Preprocessing = metadata.preprocessing
        self.format = FORMATS[path.suffix.lower()]
        self.threads: int | None = None
        self._lut = _input_table(self.preprocessing, backend.input)
        self._uniform = bool(np.all(self._lut == self._lut[:, :1]))
        self._channels = np.arange(self.preprocessing.channels)

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> EdgeModel:
        """Load a .tflite or .onnx exported by edge-transfer (labels and preprocessing inside).

        ``threads`` is the runtime's thread count (default: every core of this machine).
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in FORMATS:
            raise ModelError(f"{path}: unknown model type {suffix!r}; expected .tflite or .onnx")
        if threads is not None and threads < 1:
            raise ModelError(f"threads must be at least 1, got {threads}")
        threads = threads or os.cpu_count() or 1
        data = read_model_bytes(path)
        try:
            if suffix == ".tflite":
                _check_tflite_header(data)
                backend: Backend = LiteRTBackend(data, threads)  # verifies the flatbuffer
                check_tflite_weights(data)
                metadata = read_from_tflite(data)
            else:
                onnx = OnnxBackend(data, threads)
                metadata = read_from_onnx_map(onnx.metadata())
                backend = onnx
        except ModelError as exc:
            raise ModelError(f"{path}: {one_line(exc)}") from exc
        model = cls(path, backend, metadata)
        model.threads = threads
        model._check_output(len(metadata.labels))
        return model

    @property
    def runtime(self) -> str:
        return self.backend.runtime

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Raw 0..255 images -> the model's input tensor (preprocessed, quantized if int).

        Equal to ``input.quantize(preprocessing.apply(images))``, as one table lookup per
        pixel: the table holds that very function of each of the 256 pixel values.
        """
        pixels = self.preprocessing.to_pixels(images)
        if self.preprocessing.channel_order == "bgr":
            pixels = pixels[..., ::-1]
        if self._uniform:
            return np.take(self._lut[:, 0], pixels)
        return self._lut[pixels, self._channels]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One prepared batch through the runtime -> float32 probabilities."""
        return self.backend.output.dequantize(self.backend.run(batch))

    def predict(self, images: np.ndarray, batch_size: int = 64, top_k: int = 1) -> Prediction:
        """Probabilities and labels for raw 0..255 images (N, H, W[, C]) of any size."""
        if batch_size < 1 or top_k < 1:
            raise DataError("batch_size and top_k must be at least 1")
        x = self.prepare(images)
        if len(x) <= batch_size:
            probs = self.run(x)
        else:
            probs = np.concatenate([self.run(x[i:i + batch_size])
                                    for i in range(0, len(x), batch_size)])
        return Prediction(probs, self.labels, top_k)

    def evaluate(
        self, x: np.ndarray, y: np.ndarray, batch_size: int = 64, latency_samples: int = 100
    ) -> Evaluation:
        """Accuracy over all of ``x`` (batched), latency over single images (batch of 1).

        Latency is the time of ``predict`` on one image, preprocessing included, as
        :func:`edge_transfer.core.latency.measure_latency` measures it (warm-up runs, then
        timed runs cycling over up to ``latency_samples`` images); throughput is images per
        second of the batched pass.
        """
        y = np.asarray(y).astype(np.int64)
        if len(x) != len(y) or len(y) == 0:
            raise DataError(f"need as many labels as images (got {len(x)} and {len(y)}), >= 1")
        classes = len(self.labels)
        if y.min() < 0 or y.max() >= classes:
            raise DataError(f"labels must be in 0..{classes - 1} for this model's {classes} "
                            f"classes, found {y.min()}..{y.max()}")
        images = as_uint8_batch(x)
        start = time.perf_counter()
        predicted = self.predict(images, batch_size=batch_size).indices
        elapsed = time.perf_counter() - start
        latency = self.latency(images[:latency_samples])
        confusion = np.zeros((classes, classes), dtype=np.int64)
        np.add.at(confusion, (y, predicted), 1)
        support = confusion.sum(axis=1)
        per_class = tuple(float(confusion[i, i] / support[i]) if support[i] else None
                          for i in range(classes))
        return Evaluation(
            samples=len(y),
            accuracy=float(np.mean(predicted == y)),
            per_class_accuracy=per_class,
            confusion_matrix=confusion,
            latency_ms={k: latency[k] for k in ("p50", "p90", "p99")},
            throughput_fps=float(len(y) / elapsed) if elapsed > 0 else float("inf"),
            peak_memory_mb=peak_memory_mb(),
            predictions=predicted,
            latency=latency,
        )

    def latency(self, images: np.ndarray, runs: int | None = None) -> dict[str, Any]:
        """Milliseconds per image (batch of 1) and how they were measured, the same way
        everywhere (:mod:`edge_transfer.core.latency`)."""
        from edge_transfer.core.latency import RUNS, measure_latency

        return measure_latency(self.predict, as_uint8_batch(images), self.threads,
                               runs=runs or RUNS)

    def _check_output(self, classes: int) -> None:
        probe = np.zeros((1, *self.preprocessing.input_shape), dtype=np.uint8)
        try:
            out = self.predict(probe)
        except Exception as exc:  # a model that loads but cannot run its own input
            interrupts.check(exc)
            raise ModelError(f"{self.path}: the model fails on its declared input: "
                             f"{one_line(exc)}") from exc
        if out.probabilities.shape != (1, classes):
            raise ModelError(
                f"{self.path}: the model outputs {out.probabilities.shape[1:]} but carries "
                f"{classes} labels; export it again"
            )

    def __repr__(self) -> str:
        return (f"EdgeModel({str(self.path)!r}, runtime={self.runtime}, "
                f"input={self.backend.input.dtype}, classes={len(self.labels)})")


def _input_table(pre: Preprocessing, tensor: TensorInfo) -> np.ndarray:
    """(256, channels): the model input for each pixel value 0..255 in each channel."""
    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], pre.channels, axis=1)
    normalized = pre.normalize(values[None, None])[0, 0]  # columns identical: flip is moot
    return np.ascontiguousarray(tensor.quantize(normalized))


def _check_tflite_header(data: bytes) -> None:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError("not a TFLite flatbuffer (no TFL3 identifier); the file is damaged or "
                         "truncated, copy it again")


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    On Linux, ``VmHWM`` of ``/proc/self/status``: the high-water mark of this process's own
    address space, which starts afresh at exec. ``ru_maxrss`` does not: Linux carries it
    over fork and exec, so a child started by a process that had loaded TensorFlow would
    report the parent's peak. Elsewhere (macOS: bytes; BSDs: KB) ``ru_maxrss``.

    >>> 0 < peak_memory_mb() < 1e6
    True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024

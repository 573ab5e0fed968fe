"""Exporters: one module per file format, all with the same three functions.

    export(source, spec, calibration, out_dir, *, metadata, options=None) -> Artifact
    predict(path, x) -> np.ndarray          # float outputs, for the artifact's check
    quantizer(source, calibration, *, options=None, keras_model=None) -> Quantizer
                                            # per-layer int8, for diagnose, --keep-float auto

plus ``NAME``, ``SUFFIX``, ``PRECISIONS`` and ``IO_TYPES`` (the :class:`Exporter` protocol).
A new format is one new module and one line in ``_FORMATS``: the pipeline, ``diagnose`` and
``--keep-float auto`` find all of it through :func:`get`. The per-layer work of
``quantizer`` (calibrate once, re-quantize with layers kept in float, measure) lives in the
format's ``*_debug`` module; :class:`~exporters.diagnosis.Quantizer`, the type it returns,
and the grouping of tensor errors by Keras layer in :mod:`exporters.diagnosis`.
Importing this package imports neither TensorFlow nor a runtime.

May import edge_transfer's ``core/``, ``runtime/``, ``data/`` and ``train/`` (the pixel
adapter); never its ``export/`` (the pipeline), ``report/`` or commands (tests/test_layers.py).

>>> import exporters
>>> exporters.available()
('tflite', 'onnx')
>>> exporters.get("tflite").PRECISIONS
('fp32', 'fp16', 'dynamic', 'int8', 'int16x8')
>>> exporters.get("coreml")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
edge_transfer.core.errors.UnsupportedExportError: unknown format 'coreml'; valid formats: ...
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_transfer.core.errors import UnsupportedExportError
from edge_transfer.runtime.metadata import ModelMetadata
from exporters.diagnosis import Quantizer
from exporters.spec import (
    CALIBRATION_METHODS,
    IO_TYPES,
    PRECISIONS,
    Artifact,
    Calibration,
    Check,
    ExportOptions,
    ExportSpec,
    KerasSource,
)

_FORMATS = {"tflite": "exporters.tflite", "onnx": "exporters.onnx"}


class Exporter(Protocol):
    NAME: str
    SUFFIX: str
    PRECISIONS: tuple[str, ...]
    IO_TYPES: tuple[str, ...]

    def export(self, source: KerasSource, spec: ExportSpec, calibration: Calibration,
               out_dir: Path, *, metadata: ModelMetadata,
               options: ExportOptions | None = None) -> Artifact: ...

    def predict(self, path: Path, x: np.ndarray) -> np.ndarray: ...

    def quantizer(self, source: KerasSource, calibration: Calibration, *,
                  options: ExportOptions | None = None,
                  keras_model: Any | None = None) -> Quantizer:
        """``source`` calibrated once for int8 on the Keras model's own input (the caller
        passes ``KerasSource.plain``); ``keras_model`` lets the readings name weights that
        int8 rounds to zero."""
        ...


def available() -> tuple[str, ...]:
    """The registered format names."""
    return tuple(_FORMATS)


def precisions() -> tuple[str, ...]:
    """Every precision some registered format exports, in ``PRECISIONS`` order.

    >>> precisions()
    ('fp32', 'fp16', 'dynamic', 'int8', 'int16x8')
    """
    made = {p for name in _FORMATS for p in get(name).PRECISIONS}
    return tuple(p for p in PRECISIONS if p in made)


def get(name: str) -> Exporter:
    """The exporter module of format ``name``."""
    if name not in _FORMATS:
        raise UnsupportedExportError(
            f"unknown format {name!r}; valid formats: {', '.join(_FORMATS)}"
        )
    module: Exporter = importlib.import_module(_FORMATS[name])  # type: ignore[assignment]
    return module


__all__ = [
    "CALIBRATION_METHODS",
    "IO_TYPES",
    "PRECISIONS",
    "Artifact",
    "Calibration",
    "Check",
    "ExportOptions",
    "ExportSpec",
    "Exporter",
    "KerasSource",
    "Quantizer",
    "available",
    "get",
    "precisions",
]

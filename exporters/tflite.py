"""TFLite: fp32, fp16, dynamic range, full int8, int16x8 (and QAT / pruned models as int8 etc.).

Each variant converts from the source's one SavedModel (saved once, faster than
``from_keras_model`` per variant, and loaded once: TensorFlow's converter alone loads it twice
per file, see ``tflite_debug._load_once``), embeds labels and preprocessing, and
is written atomically.

>>> from exporters import tflite
>>> tflite.PRECISIONS
('fp32', 'fp16', 'dynamic', 'int8', 'int16x8')

The export itself is not run as a doctest (it needs a Keras model and calibration data;
tests/test_export_tflite.py runs it):

>>> art = tflite.export(source, ExportSpec.int8(io="int8"), calibration, out_dir,
...                     metadata=meta)                                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core import interrupts
from edge_transfer.core.errors import ConversionError, ExportError
from edge_transfer.core.records.diagnose import LayerDiagnosis
from edge_transfer.runtime.metadata import ModelMetadata, embed_in_tflite
from exporters import _files, tflite_debug
from exporters.diagnosis import Quantizer, by_layer
from exporters.failures import conversion_failure
from exporters.spec import Artifact, Calibration, ExportOptions, ExportSpec, KerasSource

NAME = "tflite"
SUFFIX = ".tflite"
PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
IO_TYPES = ("float", "int8", "uint8")


def export(
    source: KerasSource,
    spec: ExportSpec,
    calibration: Calibration,
    out_dir: Path,
    *,
    metadata: ModelMetadata,
    options: ExportOptions | None = None,
) -> Artifact:
    """Convert ``source`` to ``out_dir/model-<spec.name>.tflite``; raises ConversionError."""
    name = f"{NAME}-{spec.name}"
    source, calibration, metadata = _files.pixels_in(source, spec, calibration, metadata)
    try:
        data = _convert(source, spec, calibration)
    except Exception as exc:
        raise explain_failure(name, exc) from exc
    data = embed_in_tflite(data, metadata)
    artifact = _files.write_artifact(NAME, SUFFIX, spec, data, out_dir)
    note = raw_pixel_note(artifact, metadata)
    return dataclasses.replace(artifact, notes=(*artifact.notes, note)) if note else artifact


def raw_pixel_note(artifact: Artifact, metadata: ModelMetadata) -> str | None:
    """A note when a uint8 input of a pixels-in file is not the pixels themselves (scale 1,
    zero point 0): the converter sets it from the calibration images' range, and clients that
    feed image bytes as they are (MediaPipe) would then feed a shifted input."""
    tensor = artifact.inputs[0] if artifact.inputs else None
    if (metadata.in_graph is None or tensor is None or tensor.dtype != "uint8"
            or (tensor.scale, tensor.zero_point) == (1.0, 0)):
        return None
    return (f"uint8 input quantized with scale {tensor.scale:.4g}, zero point "
            f"{tensor.zero_point} (calibration pixels do not span 0..255): a client that feeds "
            "image bytes as they are (MediaPipe) gets a shifted input; calibrate on images "
            "that reach black and white, or use float input")


def _convert(source: KerasSource, spec: ExportSpec, calibration: Calibration) -> bytes:
    from edge_transfer.core.keras import load

    tf, _ = load()
    if spec.keep_float is not None:   # int8-mixed: one calibration, named layers left float
        return tflite_debug.mixed(source, calibration, spec.keep_float)
    converter = tflite_debug.converter(tf, source)
    if spec.precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if spec.precision in ("int8", "int16x8"):  # QAT too: for ops without fake-quant ranges
        converter.representative_dataset = tflite_debug.representative(calibration)
    if spec.precision == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = {"float": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[spec.io]
        converter.inference_input_type = converter.inference_output_type = io
    if spec.precision == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    return bytes(converter.convert())


_SELECT_OPS = re.compile(r"TF Select ops: ([^\n]+)")
_CUSTOM_OPS = re.compile(r"Custom ops: ([^\n]+)")


def explain_failure(name: str, exc: BaseException) -> ExportError:
    """A converter failure as one line; ops that only ``SELECT_TF_OPS`` could convert are
    named as such (the converter here never enables it: LiteRT has no Flex kernels).

    >>> str(explain_failure("tflite-fp32", RuntimeError("x\\nTF Select ops: Det, Svd\\ny")))[:66]
    'tflite-fp32 needs TensorFlow ops that only SELECT_TF_OPS converts '
    """
    interrupts.check(exc)   # a signal in the converter is an interrupt, not a failure
    message = str(exc)
    select, custom = _SELECT_OPS.search(message), _CUSTOM_OPS.search(message)
    if select:
        return ConversionError(
            f"{name} needs TensorFlow ops that only SELECT_TF_OPS converts "
            f"({select.group(1).strip()}): such a file runs only with TensorFlow's Flex "
            "delegate, which the LiteRT runtime does not have, so none was written; replace "
            "those ops in the model, or use the ONNX export")
    if custom:
        return ConversionError(
            f"{name} uses ops that neither LiteRT nor SELECT_TF_OPS has "
            f"({custom.group(1).strip()}); no file was written; replace those ops in the "
            "model, or use the ONNX export")
    return conversion_failure(name, exc)


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Float outputs on float input ``x``, through the device's runtime code."""
    return _files.predict(path, x, NAME)


def quantizer(source: KerasSource, calibration: Calibration, *,
              options: ExportOptions | None = None,
              keras_model: Any | None = None) -> Quantizer:
    """The per-layer int8 quantizer (``diagnose``, ``--keep-float auto``): ``source`` (the
    Keras model's own input) calibrated once through the QuantizationDebugger; a layer kept
    in float is its op outputs denylisted. ``options``: none apply to TFLite."""
    calibrated = tflite_debug.calibrate(source, calibration)

    def nodes(layer: str) -> list[str]:
        return tflite_debug.nodes_of(calibrated, layer)

    def op_types(layer: str) -> list[str]:
        return [calibrated.op_outputs[n] for n in nodes(layer)]

    def quantize(layers: tuple[str, ...]) -> bytes:
        return tflite_debug.quantize(calibrated, denylisted_nodes=[n for la in layers
                                                                   for n in nodes(la)])

    def measure(x: np.ndarray, _int8: Any) -> tuple[LayerDiagnosis, ...]:
        return by_layer(tflite_debug.measure(calibrated, x), nodes, op_types,
                        calibrated.weights_of, keras_model)

    return Quantizer(NAME, quantize, bytes, measure)

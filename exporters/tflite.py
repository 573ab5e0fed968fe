"""TFLite: fp32, fp16, dynamic range, full int8, int16x8 (and QAT / pruned models as int8 etc.).

Each variant converts from the source's one SavedModel (saved once, faster than
``from_keras_model`` per variant), embeds labels and preprocessing, and is written atomically.

>>> from exporters import tflite
>>> tflite.PRECISIONS
('fp32', 'fp16', 'dynamic', 'int8', 'int16x8')

The export itself is not run as a doctest (it needs a Keras model and calibration data;
tests/test_export_tflite.py runs it):

>>> art = tflite.export(source, ExportSpec.int8(io="int8"), calibration, out_dir,
...                     metadata=meta)                                  # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer import interrupts
from edge_transfer.atomic import write_bytes_atomic
from edge_transfer.errors import ConversionError, ExportError
from edge_transfer.metadata import ModelMetadata, embed_in_tflite
from exporters._failures import conversion_failure
from exporters._files import file_facts
from exporters._types import (
    Artifact,
    Calibration,
    ExportOptions,
    ExportSpec,
    KerasSource,
    TensorInfo,
)

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
    try:
        data = _convert(source, spec, calibration)
    except Exception as exc:
        raise explain_failure(name, exc) from exc
    data = embed_in_tflite(data, metadata)
    inputs, outputs = runnable(name, data)   # before writing: no file LiteRT cannot run
    path = Path(out_dir) / f"model-{spec.name}{SUFFIX}"
    write_bytes_atomic(path, data)
    facts = file_facts(data)
    return Artifact(NAME, spec, path=path, bytes=facts.bytes, gzip_bytes=facts.gzip_bytes,
                    sha256=facts.sha256, inputs=inputs, outputs=outputs)


def _convert(source: KerasSource, spec: ExportSpec, calibration: Calibration) -> bytes:
    from edge_transfer._keras import load

    tf, _ = load()
    if spec.keep_float is not None:   # int8-mixed: one calibration, named layers left float
        from exporters._tflite_debug import mixed

        return mixed(source, calibration, spec.keep_float)
    converter = _converter(tf, source)
    if spec.precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if spec.precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if spec.precision in ("int8", "int16x8"):  # QAT too: for ops without fake-quant ranges
        converter.representative_dataset = _representative(calibration)
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


def runnable(name: str, data: bytes) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Inputs and outputs of ``data`` once LiteRT has loaded it and allocated its tensors;
    a ConversionError naming the op when it cannot (e.g. a Flex or custom op)."""
    try:
        interpreter = _interpreter(data)
        interpreter.allocate_tensors()
    except Exception as exc:
        interrupts.check(exc)
        raise ConversionError(f"{name}: LiteRT cannot run the converted file "
                              f"({str(exc).strip().splitlines()[0][:200]}); no file was "
                              "written") from exc
    return (tuple(_tensor_info(d) for d in interpreter.get_input_details()),
            tuple(_tensor_info(d) for d in interpreter.get_output_details()))


def _converter(tf: Any, source: KerasSource) -> Any:
    try:
        saved = source.saved_model
    except Exception as exc:  # a model that cannot be saved as a SavedModel converts directly
        interrupts.check(exc)
        return tf.lite.TFLiteConverter.from_keras_model(source.model)
    return tf.lite.TFLiteConverter.from_saved_model(str(saved))


def _representative(calibration: Calibration) -> Any:
    def dataset() -> Any:
        for sample in calibration:
            yield [sample[calibration.input_name]]

    return dataset


def _interpreter(model: bytes | Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, Path):
        return Interpreter(model_path=str(model))
    return Interpreter(model_content=model)


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail["quantization"]
    quantized = scale != 0.0
    return TensorInfo(
        name=str(detail["name"]),
        shape=tuple(int(d) for d in detail["shape_signature"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale) if quantized else None,
        zero_point=int(zero_point) if quantized else None,
    )


def describe(model: bytes | Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Inputs and outputs (names, shapes, dtypes, quantization) of a .tflite."""
    interpreter = _interpreter(model)
    return (tuple(_tensor_info(d) for d in interpreter.get_input_details()),
            tuple(_tensor_info(d) for d in interpreter.get_output_details()))


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Float outputs of a .tflite on float input ``x`` (quantizing I/O where the file is int)."""
    interpreter = _interpreter(Path(path))
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], quantize(x, inp))
    interpreter.invoke()
    return dequantize(interpreter.get_tensor(out["index"]), out)


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.rint(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)

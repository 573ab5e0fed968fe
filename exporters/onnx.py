"""ONNX: fp32 (tf2onnx), fp16 (onnxconverter-common), dynamic int8 and static int8 QDQ
(ONNX Runtime quantization).

The float graph is converted once per source with an explicit input signature (dynamic
batch axis ``batch``) and the configured opset; the other variants start from it. fp16 keeps
float32 inputs and outputs (casts inside), so every device feeds it the same tensors. A QAT
model converts directly: its fake-quant nodes become QuantizeLinear/DequantizeLinear.

>>> from exporters import onnx
>>> onnx.PRECISIONS
('fp32', 'fp16', 'dynamic', 'int8')

The export itself is not run as a doctest (it needs a Keras model and calibration data;
tests/test_export_onnx.py runs it):

>>> art = onnx.export(source, ExportSpec.int8(), calibration, out_dir,
...                   metadata=meta, options=ExportOptions(opset=17))     # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.records.diagnose import LayerDiagnosis
from edge_transfer.runtime.metadata import ModelMetadata
from edge_transfer.runtime.onnx_metadata import annotate
from exporters import _files, onnx_debug
from exporters.diagnosis import Quantizer, by_layer
from exporters.failures import conversion_failure
from exporters.onnx_graph import REDUCE_RANGE, _float16, _float_model, adapter_nodes
from exporters.spec import Artifact, Calibration, ExportOptions, ExportSpec, KerasSource

NAME = "onnx"
SUFFIX = ".onnx"
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
IO_TYPES = ("float",)

def export(
    source: KerasSource,
    spec: ExportSpec,
    calibration: Calibration,
    out_dir: Path,
    *,
    metadata: ModelMetadata,
    options: ExportOptions | None = None,
) -> Artifact:
    """Convert ``source`` to ``out_dir/model-<spec.name>.onnx``; raises ConversionError."""
    import onnx

    options = options or ExportOptions()
    name = f"{NAME}-{spec.name}"
    source, calibration, metadata = _files.pixels_in(source, spec, calibration, metadata)
    try:
        model = _convert(source, spec, calibration, options)
    except Exception as exc:
        raise conversion_failure(name, exc) from exc
    annotate(model, metadata)
    data = model.SerializeToString()
    onnx.checker.check_model(model)
    return _files.write_artifact(NAME, SUFFIX, spec, data, out_dir)


# ----------------------------------------------------------------- tf2onnx paths, in order

def _convert(source: KerasSource, spec: ExportSpec, calibration: Calibration,
             options: ExportOptions) -> Any:
    import onnx

    if spec.keep_float is not None:   # int8-mixed: named layers excluded from quantization
        return onnx_debug.mixed(source, calibration, spec.keep_float, options)
    model = _float_model(source, options.opset)
    if spec.qat:
        return store_int8_weights(model)
    if spec.precision == "fp32":
        return model
    if spec.precision == "fp16":
        return _float16(model)
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory(prefix="onnx-quant-") as tmp:
        fp32, out = Path(tmp) / "fp32.onnx", Path(tmp) / "quant.onnx"
        onnx.save(model, str(fp32))
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        if spec.precision == "dynamic":
            # the pixel adapter stays float: quantized per batch, its raw-pixel input's scale
            # would follow each batch's brightest pixel (and the result the batch)
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8,
                             nodes_to_exclude=adapter_nodes(model))
        elif spec.precision == "int8":
            from onnxruntime.quantization import CalibrationMethod, QuantFormat

            method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                      "percentile": CalibrationMethod.Percentile}[calibration.method]
            quantize_static(
                str(prepared), str(out), _Reader(calibration),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=method, reduce_range=REDUCE_RANGE,
            )
        else:
            raise ValueError(f"onnx cannot produce {spec.precision}")
        return onnx.load(str(out))


_WEIGHT_AXIS = {"Conv": 0, "MatMul": 1}


def store_int8_weights(model: Any) -> Any:
    """Store the weights of a QAT graph as int8 + DequantizeLinear (per channel or tensor).

    tf2onnx folds a QAT model's weight fake-quant into float constants that already lie on a
    symmetric int8 grid; storing them as int8 makes the file int8-sized. A weight that is not
    on such a grid is left as it is.
    """
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    consumers = Counter(name for node in model.graph.node for name in node.input)
    nodes = []
    for node in model.graph.node:
        name = node.input[1] if len(node.input) > 1 else ""
        init = initializers.get(name)
        if node.op_type in _WEIGHT_AXIS and init is not None and consumers[name] == 1:
            axis = _WEIGHT_AXIS[node.op_type]
            weights = numpy_helper.to_array(init)
            found = _on_int8_grid(weights, axis) or _on_int8_grid(weights, None)
            if found is not None:
                q, scale = reduced_range(*found, axis) if REDUCE_RANGE else found
                model.graph.initializer.remove(init)
                model.graph.initializer.extend([
                    numpy_helper.from_array(q, f"{name}_int8"),
                    numpy_helper.from_array(scale, f"{name}_scale"),
                    numpy_helper.from_array(np.zeros_like(scale, np.int8), f"{name}_zero_point"),
                ])
                dequantize = helper.make_node(
                    "DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"],
                    [name], name=f"{name}_DequantizeLinear")
                if scale.ndim:
                    dequantize.attribute.append(helper.make_attribute("axis", axis))
                nodes.append(dequantize)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


# ONNX Runtime's reduce_range grid for symmetric int8 weights: [-64, 64].
REDUCED_LEVELS = 64


def reduced_range(q: np.ndarray, scale: np.ndarray,
                  axis: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights ``q`` times ``scale`` (per ``axis``, or one scale) moved onto the 7-bit
    grid [-64, 64] that post-training int8 uses (:data:`REDUCE_RANGE`); a channel already
    within it is kept exactly.

    >>> q, scale = reduced_range(np.array([[127, -64], [3, 64]], np.int8),
    ...                          np.array([0.01, 0.02], np.float32), 0)
    >>> q.tolist(), [round(float(s), 6) for s in scale]
    ([[64, -32], [3, 64]], [0.019844, 0.02])
    """
    per_axis = scale.ndim > 0
    moved = np.moveaxis(q, axis, 0) if per_axis else q.reshape(1, -1)
    rows = moved.reshape(len(moved), -1).astype(np.float64)
    steps = np.atleast_1d(scale).astype(np.float64)
    peak = np.abs(rows).max(axis=1)
    wide = peak > REDUCED_LEVELS
    new_steps = np.where(wide, steps * peak / REDUCED_LEVELS, steps)
    values = rows * steps[:, None]
    rows = np.where(wide[:, None], np.rint(values / new_steps[:, None]), rows)
    out = rows.reshape(moved.shape)
    out = np.moveaxis(out, 0, axis) if per_axis else out.reshape(q.shape)
    new_scale = new_steps.astype(np.float32) if per_axis else np.float32(new_steps[0])
    return out.astype(np.int8), np.asarray(new_scale, np.float32)


def _on_int8_grid(weights: np.ndarray,
                  axis: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(int8 weights, scale)`` if ``weights`` are integers in [-127, 127] times a scale per
    ``axis`` (one scale for the tensor when ``axis`` is None), else None.

    A channel's largest integer need not be 127: tfmot quantizes a depthwise kernel per
    tensor, and the BatchNormalization TensorFlow folds into it afterwards scales each output
    channel, so channel c holds integers up to some Q_c <= 127 times its own scale. The
    largest Q_c that puts every value of the channel on the grid is taken (any such grid
    stores the channel exactly).

    >>> w = np.array([[3, -1, 2], [-127, 5, 0]], np.float32).T * np.float32(0.01)
    >>> q, scale = _on_int8_grid(w, 1)
    >>> q.T.tolist(), bool(np.allclose(q * scale, w, rtol=0, atol=1e-7))
    ([[126, -42, 84], [-127, 5, 0]], True)
    >>> _on_int8_grid(np.array([[0.1, 0.2], [0.3, 0.123456]], np.float32), None) is None
    True
    """
    if weights.ndim < 2 or weights.dtype != np.float32:
        return None
    w = weights.astype(np.float64)
    moved = w.reshape(1, -1) if axis is None else np.moveaxis(w, axis, 0)
    rows = moved.reshape(len(moved), -1)
    peak = np.abs(rows).max(axis=1)
    scale = np.ones(len(rows))
    pending = peak > 0
    for levels in range(127, 0, -1):
        if not pending.any():
            break
        index = np.flatnonzero(pending)
        step = peak[index] / levels
        error = np.abs(np.rint(rows[index] / step[:, None]) * step[:, None] - rows[index])
        on_grid = error.max(axis=1) <= 1.27e-4 * peak[index]
        scale[index[on_grid]] = step[on_grid]
        pending[index[on_grid]] = False
    if pending.any():
        return None
    q = np.rint(rows / scale[:, None]).reshape(moved.shape)
    q = q.reshape(w.shape) if axis is None else np.moveaxis(q, 0, axis)
    scale = np.array(scale[0]) if axis is None else scale
    return q.astype(np.int8), scale.astype(np.float32)


class _Reader:
    """onnxruntime's CalibrationDataReader over the shared calibration iterator."""

    def __init__(self, calibration: Calibration) -> None:
        self._calibration = calibration
        self._samples = iter(calibration)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._samples, None)

    def rewind(self) -> None:
        self._samples = iter(self._calibration)


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Float outputs on float input ``x``, through the device's runtime code."""
    return _files.predict(path, x, NAME)


def quantizer(source: KerasSource, calibration: Calibration, *,
              options: ExportOptions | None = None,
              keras_model: Any | None = None) -> Quantizer:
    """The per-layer int8 quantizer (``diagnose``, ``--keep-float auto``): ``source``'s (the
    Keras model's own input) float graph prepared once for static QDQ int8 with the
    exporter's settings; a layer kept in float is its nodes excluded."""
    prepared = onnx_debug.prepare(source, options or ExportOptions())

    def op_types(layer: str) -> list[str]:
        names = set(prepared.nodes_of(layer))
        return [op for node, op, _ in prepared.producers.values() if node in names]

    def quantize(layers: tuple[str, ...]) -> Any:
        return onnx_debug.quantize(prepared, calibration,
                                   [n for la in layers for n in prepared.nodes_of(la)])

    def measure(x: np.ndarray, int8: Any) -> tuple[LayerDiagnosis, ...]:
        return by_layer(onnx_debug.measure(prepared, calibration, x, quantized=int8),
                        prepared.nodes_of, op_types, prepared.weights_of, keras_model)

    return Quantizer(NAME, quantize, _serialized, measure)


def _serialized(model: Any) -> bytes:
    return bytes(model.SerializeToString())

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

import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core import interrupts
from edge_transfer.core.errors import ConversionError, UnsupportedExportError, one_line
from edge_transfer.runtime.backends import open_backend
from edge_transfer.runtime.metadata import ModelMetadata
from edge_transfer.runtime.onnx_metadata import annotate
from exporters import _files
from exporters.failures import conversion_failure
from exporters.spec import Artifact, Calibration, ExportOptions, ExportSpec, KerasSource

NAME = "onnx"
SUFFIX = ".onnx"
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
IO_TYPES = ("float",)
BATCH_AXIS = "batch"



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


def _float_model(source: KerasSource, opset: int) -> Any:
    """The fp32 graph of ``source``, converted once per opset and shared by its variants (as
    is the reason it cannot be: each path tried again would fail again, slowly)."""
    import onnx

    key = float_key(opset, source.key_suffix)
    if isinstance(source.cache.get(key), str):
        raise ConversionError(source.cache[key])
    if key not in source.cache:
        try:
            model = convert_float(source, opset)
        except ConversionError as exc:
            source.cache[key] = str(exc)
            raise
        canonical_names(model.graph)
        for value in (*model.graph.input, *model.graph.output):
            dims = value.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].dim_param = BATCH_AXIS
        source.cache[key] = model.SerializeToString()
    return onnx.load_from_string(source.cache[key])


def adapter_nodes(model: Any) -> list[str]:
    """The nodes of the pixel adapter (:func:`edge_transfer.train.models.pixel_adapter`) in a
    graph."""
    from edge_transfer.train.models import PIXEL_ADAPTER

    return [node.name for node in model.graph.node if PIXEL_ADAPTER in node.name]


def float_key(opset: int, suffix: str = "") -> str:
    """The cache key of a source's float graph (``suffix``: :attr:`KerasSource.key_suffix`).

    >>> float_key(17, "-pixels")
    'onnx-fp32-pixels-opset17'
    """
    return f"onnx-fp32{suffix}-opset{opset}"


def _float16(model: Any) -> Any:
    """fp16 weights and arithmetic, float32 inputs and outputs (``keep_io_types``)."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise UnsupportedExportError(
            "ONNX fp16 needs onnxconverter-common: pip install onnxconverter-common "
            "(it comes with edge-transfer[train])") from exc
    return float16.convert_float_to_float16(model, keep_io_types=True)


# ----------------------------------------------------------------- tf2onnx paths, in order

FALLBACK_OPSET = 13


def conversion_paths(opset: int) -> list[tuple[str, str, int]]:
    """(label, tf2onnx entry point, opset) tried in order until ONNX Runtime loads the graph.

    >>> [label for label, _, _ in conversion_paths(17)]
    ['from_keras opset 17', 'from_function opset 17', 'from_keras opset 13']
    """
    paths = [(f"from_keras opset {opset}", "keras", opset),
             (f"from_function opset {opset}", "function", opset)]
    if opset != FALLBACK_OPSET:
        paths.append((f"from_keras opset {FALLBACK_OPSET}", "keras", FALLBACK_OPSET))
    return paths


def convert_float(source: KerasSource, opset: int) -> Any:
    """tf2onnx's fp32 graph of ``source`` that ONNX Runtime can load.

    Grouped convolutions (RegNet, ResNeXt-style blocks) run in tf_keras through an
    XLA-compiled ``tf.function``, which tf2onnx leaves as a ``PartitionedCall`` node that no
    ONNX runtime has (tf2onnx issue #2099); they are traced as plain convolutions instead
    (same maths, checked by the export's comparison with Keras). So is the exact GELU
    (ConvNeXt): TensorFlow computes it with ``Erfc``, which tf2onnx cannot convert, so it is
    traced as ``0.5 x (1 + erf(x / sqrt 2))``. Each path of
    :func:`conversion_paths` is tried until ONNX Runtime loads the result; if none does, the
    error names every path's reason and failing node.
    """
    failures = []
    with inline_grouped_convolutions(source.model), gelu_through_erf(source.model):
        for label, entry, path_opset in conversion_paths(opset):
            try:
                model = _tf2onnx(source, entry, path_opset)
            except Exception as exc:
                interrupts.check(exc)
                failures.append(f"{label}: {conversion_failure('onnx', exc)}")
                continue
            refusal = runtime_refusal(model)
            if refusal is None:
                return model
            failures.append(f"{label}: {refusal}")
    raise ConversionError("no tf2onnx path gives a graph ONNX Runtime can run (" +
                          "; ".join(failures) + ")")


def _tf2onnx(source: KerasSource, entry: str, opset: int) -> Any:
    import tf2onnx

    if entry == "keras":
        model, _ = tf2onnx.convert.from_keras(
            source.converted, input_signature=source.input_signature(), opset=opset)
        return model
    from edge_transfer.core.keras import load

    tf, _ = load()
    keras_model = source.converted
    function = tf.function(lambda x: keras_model(x, training=False),
                           input_signature=source.input_signature())
    model, _ = tf2onnx.convert.from_function(function, input_signature=source.input_signature(),
                                             opset=opset)
    return model


def runtime_refusal(model: Any) -> str | None:
    """Why ONNX Runtime refuses ``model`` (naming the first op it has no kernel for), or None.

    tf2onnx writes TensorFlow ops it cannot map (``PartitionedCall``, ...) into the graph and
    only logs them; the file would be refused at load time on the device.
    """
    import onnx

    unknown = [node for node in model.graph.node if node.domain in ("", "ai.onnx")
               and not onnx.defs.has(node.op_type)]
    if unknown:
        node = unknown[0]
        return (f"tf2onnx left TensorFlow op {node.op_type} (node {node.name}) that ONNX "
                f"Runtime has no kernel for ({len(unknown)} such nodes)")
    try:
        open_backend(model.SerializeToString(), format=NAME)
    except Exception as exc:
        interrupts.check(exc)
        return f"ONNX Runtime refuses the graph: {one_line(exc, 200, first=True)}"
    return None


@contextmanager
def inline_grouped_convolutions(model: Any) -> Iterator[int]:
    """Trace every grouped convolution of ``model`` as a plain ``tf.nn.convolution`` (not
    tf_keras' XLA-compiled ``tf.function``) while the block runs; yields how many."""
    from edge_transfer.core.keras import load

    _, keras = load()
    layers = [layer for layer in model.submodules
              if isinstance(layer, keras.layers.Conv2D) and getattr(layer, "groups", 1) > 1]
    for layer in layers:
        layer._jit_compiled_convolution_op = _plain_convolution(layer)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            del layer._jit_compiled_convolution_op   # back to the class's compiled method


@contextmanager
def gelu_through_erf(model: Any) -> Iterator[int]:
    """Trace every exact-GELU activation of ``model`` (``activation="gelu"``, as ConvNeXt's)
    as ``0.5 x (1 + erf(x / sqrt 2))`` while the block runs; yields how many layers.

    TensorFlow's ``gelu(approximate=False)`` is ``0.5 x erfc(-x / sqrt 2)``, and tf2onnx has
    no conversion for ``Erfc`` (ONNX has ``Erf``): the same function, written with ``Erf``."""
    originals = [(layer, layer.activation) for layer in model.submodules
                 if getattr(getattr(layer, "activation", None), "__name__", None) == "gelu"]
    for layer, _ in originals:
        layer.activation = _gelu_erf
    try:
        yield len(originals)
    finally:
        for layer, activation in originals:
            layer.activation = activation


def _gelu_erf(x: Any) -> Any:
    from edge_transfer.core.keras import load

    tf, _ = load()
    return 0.5 * x * (1.0 + tf.math.erf(x * 0.7071067811865476))


def _plain_convolution(layer: Any) -> Any:
    def convolution(inputs: Any, kernel: Any) -> Any:
        return layer.convolution_op(inputs, kernel)

    return convolution


_GENERATED = re.compile(r"__(\d+)(?=(:\d+)?$)")


def canonical_names(graph: Any) -> None:
    """Names and order that do not depend on the converting process, so the same model gives
    the same bytes: the ``NAME__<n>`` suffixes tf2onnx gives the nodes it inserts renumbered
    1, 2, 3... in graph order (tf2onnx draws ``n`` from a process-wide counter); constants
    that several nodes share named ``shared_constant__<k>`` in order of first use (tf2onnx
    merges equal constants under whichever name its hash order puts first); initializers
    sorted by name. Every renaming is one-to-one.
    """
    numbers: dict[str, str] = {}

    def renumber(name: str) -> str:
        match = _GENERATED.search(name)
        if not match:
            return name
        new = numbers.setdefault(match.group(1), str(len(numbers) + 1))
        return name[: match.start(1)] + new + name[match.end(1):]

    _rename(graph, renumber)
    shared = _shared_constants(graph)
    _rename(graph, lambda name: shared.get(name, name))
    initializers = sorted(graph.initializer, key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _rename(graph: Any, rename: Callable[[str], str]) -> None:
    """Apply ``rename`` to every value and node name of ``graph`` and of its subgraphs."""
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        value.name = rename(value.name)
    for node in graph.node:
        node.name = rename(node.name)
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        for attribute in node.attribute:
            for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                _rename(sub, rename)


def _shared_constants(graph: Any) -> dict[str, str]:
    """``{name: shared_constant__<k>}`` for the initializers more than one node reads."""
    initializers = {t.name for t in graph.initializer}
    readers = Counter(name for node in graph.node for name in node.input if name in initializers)
    shared = [name for name in dict.fromkeys(n for node in graph.node for n in node.input)
              if readers[name] > 1]
    return {name: f"shared_constant__{k}" for k, name in enumerate(shared, start=1)}


def _convert(source: KerasSource, spec: ExportSpec, calibration: Calibration,
             options: ExportOptions) -> Any:
    import onnx

    if spec.keep_float is not None:   # int8-mixed: named layers excluded from quantization
        from exporters.onnx_debug import mixed

        return mixed(source, calibration, spec.keep_float, options)
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


# 7-bit weights. x86 CPUs without VNNI (AVX2, AVX-512) compute int8 convolutions with a
# 16-bit intermediate that saturates on some models, so the workstation's check and an ARM
# device disagree (seen: the same .onnx 0.969 on x86-64, 0.956 on arm64, 3 of 225 images);
# with 7-bit weights both compute the same result. ONNX Runtime's own advice for x86.
# A QAT graph keeps QAT's 8-bit weights (store_int8_weights): ONNX Runtime 1.32 fuses none of
# its convolutions into integer kernels (DequantizeLinear + float Conv stay), so they cannot
# saturate; measured on four backbones, x86 against exact QDQ arithmetic: 0-1 of 359 top-1
# changes, as with 7-bit post-training weights (2-35 with 8-bit ones). Should those
# convolutions ever be fused, QAT would need 7-bit weight quantizers in training, not a
# rounding of its 8-bit weights here. tests/test_export_onnx.py checks it on the digits model.
REDUCE_RANGE = True

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
                q, scale = found
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

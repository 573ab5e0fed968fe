"""ONNX per-layer quantization error and selective float (static QDQ int8).

The float graph is prepared once per source (``quant_pre_process``) and quantized with the
exporter's own settings; :func:`measure` runs both through
``onnxruntime.quantization.qdq_loss_debug`` (``modify_model_output_intermediate_tensors``,
``collect_activations``, ``create_activation_matching``) and reads, per quantized tensor,
the cumulative error against the float model and the error its producing node adds over
its inputs'. :func:`quantize` leaves nodes in float with ``quantize_static(nodes_to_exclude=)``.

>>> prepared = prepare(source, options)                               # doctest: +SKIP
>>> errors = measure(prepared, calibration, x_val[:50])               # doctest: +SKIP
>>> model = quantize(prepared, calibration, nodes_to_exclude=errors[0].node.split(","))
...                                                                   # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.diagnosis import TensorError, added_error, layer_of, relative_error
from exporters.onnx_graph import REDUCE_RANGE, _float_model
from exporters.spec import Calibration, ExportOptions, KerasSource


@dataclass(frozen=True, eq=False)
class Prepared:
    """The float graph after ``quant_pre_process``, as bytes, and its node names by layer."""

    model: bytes
    producers: dict[str, tuple[str, str, tuple[str, ...]]]  # tensor -> (node, op, inputs)
    weights: dict[str, int] = field(default_factory=dict)  # node -> its weight values

    def weights_of(self, nodes: Sequence[str]) -> int:
        """The weight values (initializers of 2 or more axes) of ``nodes``: what keeping
        them in float stores as float32 instead of int8."""
        return sum(self.weights.get(node, 0) for node in nodes)

    def nodes_of(self, layer: str) -> list[str]:
        """The names of the nodes converted from Keras layer ``layer``."""
        return sorted({node for node, _, _ in self.producers.values()
                       if layer_of(node) == layer})

    def nodes_of_type(self, op_type: str) -> list[str]:
        return sorted({node for node, op, _ in self.producers.values() if op == op_type})


def prepare(source: KerasSource, options: ExportOptions) -> Prepared:
    """The source's float ONNX graph, prepared for quantization once (cached on the source).
    Per-layer work passes ``source.plain`` (the Keras model's own input); an int8-mixed
    file, the source behind the pixel adapter."""
    key = f"onnx-prepared{source.key_suffix}-opset{options.opset}"
    if key not in source.cache:
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        model = _float_model(source, options.opset)
        with tempfile.TemporaryDirectory(prefix="onnx-prepare-") as tmp:
            fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
            onnx.save(model, str(fp32))
            quant_pre_process(str(fp32), str(prepared))
            data = prepared.read_bytes()
        graph = onnx.load_from_string(data).graph
        producers = {out: (node.name, node.op_type, tuple(node.input))
                     for node in graph.node for out in node.output}
        sizes = {init.name: int(np.prod(init.dims)) for init in graph.initializer
                 if len(init.dims) >= 2}   # 1-axis biases stay 32-bit in int8 too
        weights = {node.name: sum(sizes.get(name, 0) for name in node.input)
                   for node in graph.node}
        source.cache[key] = Prepared(data, producers, weights)
    prepared_model: Prepared = source.cache[key]
    return prepared_model


class _Reader:
    """onnxruntime's CalibrationDataReader over ``x``, one sample per run (iterable too)."""

    def __init__(self, x: np.ndarray, input_name: str) -> None:
        self.x, self.input_name = x, input_name
        self._k = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._k >= len(self.x):
            return None
        self._k += 1
        return {self.input_name: np.ascontiguousarray(self.x[self._k - 1:self._k], np.float32)}

    def rewind(self) -> None:
        self._k = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item


def quantize(prepared: Prepared, calibration: Calibration,
             nodes_to_exclude: Sequence[str] = ()) -> Any:
    """Static QDQ int8 of the prepared graph (the exporter's settings), excluded nodes float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibration.method]
    with tempfile.TemporaryDirectory(prefix="onnx-mixed-") as tmp:
        src, out = Path(tmp) / "prepared.onnx", Path(tmp) / "quant.onnx"
        src.write_bytes(prepared.model)
        quantize_static(
            str(src), str(out), _Reader(calibration.x, calibration.input_name),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=method, nodes_to_exclude=list(nodes_to_exclude),
            reduce_range=REDUCE_RANGE,
        )
        return onnx.load(str(out))


def _activations(model_path: Path, x: np.ndarray, input_name: str) -> dict[str, list[Any]]:
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        modify_model_output_intermediate_tensors,
    )

    augmented = model_path.with_name(model_path.stem + "-augmented.onnx")
    modify_model_output_intermediate_tensors(str(model_path), str(augmented))
    return collect_activations(str(augmented), _Reader(x, input_name))  # type: ignore[arg-type]


def measure(prepared: Prepared, calibration: Calibration, x: np.ndarray,
            quantized: Any | None = None) -> list[TensorError]:
    """Per quantized activation, in graph order: cumulative error against the float model,
    and the error its producing node adds over the errors of its inputs."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import create_activation_matching

    quantized = quantized if quantized is not None else quantize(prepared, calibration)
    with tempfile.TemporaryDirectory(prefix="onnx-debug-") as tmp:
        fp32, qdq = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        fp32.write_bytes(prepared.model)
        onnx.save(quantized, str(qdq))
        matched = create_activation_matching(
            _activations(qdq, x, calibration.input_name),
            _activations(fp32, x, calibration.input_name))
    cumulative = {name: relative_error(np.concatenate([np.ravel(a) for a in m["float"]]),
                                       np.concatenate([np.ravel(a) for a in m["post_qdq"]]),
                                       channels_last=False)
                  for name, m in matched.items() if m.get("float")}
    memo: dict[str, float] = {}

    def upstream(tensor: str, seen: frozenset[str] = frozenset()) -> float:
        """The cumulative error reaching ``tensor``: measured, or the worst of its inputs'."""
        if tensor in cumulative:
            return cumulative[tensor]
        if tensor in memo or tensor not in prepared.producers or tensor in seen:
            return memo.get(tensor, 0.0)
        inputs = prepared.producers[tensor][2]
        memo[tensor] = max((upstream(t, seen | {tensor}) for t in inputs), default=0.0)
        return memo[tensor]

    rows = []
    for tensor, (node, op_type, inputs) in prepared.producers.items():
        if tensor not in cumulative:
            continue
        ref = np.concatenate([np.ravel(a) for a in matched[tensor]["float"]])
        rows.append(TensorError(
            node=node, layer=layer_of(node), op_type=op_type,
            local=added_error(cumulative[tensor], [upstream(t) for t in inputs]),
            cumulative=cumulative[tensor], value_range=float(np.ptp(ref)) if ref.size else 0.0))
    return rows


def mixed(source: KerasSource, calibration: Calibration, keep_float: Sequence[str],
          options: ExportOptions) -> Any:
    """Static int8 QDQ with ``keep_float`` (Keras layer names or ONNX op types such as
    ``Mul``) excluded; raises UnsupportedExportError for a name that matches nothing.

    A Keras layer's name wins over an op type of the same name: MobileNetV3's first
    convolution is the layer ``Conv``, and ``--keep-float auto`` (which names layers) chose
    it alone, while reading it as the op type kept every convolution in float (a file 2.77x
    plain int8, the search having measured 1.01x)."""
    from edge_transfer.core.errors import UnsupportedExportError
    from exporters.diagnosis import unknown_names

    prepared = prepare(source, options)
    kinds = {op.lower(): op for _, op, _ in prepared.producers.values()}
    nodes: list[str] = []
    unknown = []
    for name in keep_float:
        if found := prepared.nodes_of(name):
            nodes += found
        elif name.lower() in kinds:
            nodes += prepared.nodes_of_type(kinds[name.lower()])
        else:
            unknown.append(name)
    if unknown:
        layers = list(dict.fromkeys(layer_of(n) for n, _, _ in prepared.producers.values()))
        raise UnsupportedExportError(unknown_names(
            unknown, layers, [op for _, op, _ in prepared.producers.values()]))
    model = quantize(prepared, calibration, nodes)
    shield_float_layers(model, nodes)
    return model


def shield_float_layers(model: Any, nodes: Sequence[str]) -> int:
    """Keep the float Conv/ConvTranspose/Gemm among ``nodes`` float in any ONNX Runtime
    session; returns how many were shielded.

    ONNX Runtime's WeightBiasQuantization (on in every default session) quantizes the float
    weights of such a node to per-tensor int8 at load time when it reads a per-tensor
    DequantizeLinear and feeds a QuantizeLinear: it would undo the fallback (the trap layer
    at chance again) in every client. The node gets a DequantizeLinear of its own with the
    same scale and zero point repeated per channel: the same numbers, which that
    optimization leaves alone (it wants a per-tensor input).
    """
    from onnx import helper, numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    wanted = set(nodes)
    added, shielded = [], 0
    for node in model.graph.node:
        dq = producers.get(node.input[0]) if node.input else None
        channels = _input_channels(node, inits) if node.name in wanted else None
        if dq is None or dq.op_type != "DequantizeLinear" or channels is None \
                or dq.input[1] not in inits or len(inits[dq.input[1]].dims) != 0:
            continue
        scale = numpy_helper.to_array(inits[dq.input[1]])
        zero = numpy_helper.to_array(inits[dq.input[2]])
        name = f"{node.name}_input_per_channel"
        model.graph.initializer.extend([
            numpy_helper.from_array(np.full(channels, scale, scale.dtype), f"{name}_scale"),
            numpy_helper.from_array(np.full(channels, zero, zero.dtype), f"{name}_zero_point")])
        added.append((node, helper.make_node(
            "DequantizeLinear", [dq.input[0], f"{name}_scale", f"{name}_zero_point"], [name],
            name=f"{name}_DequantizeLinear", axis=1)))
        node.input[0] = name
        shielded += 1
    for node, dq_node in added:   # each right before its float node: topological order
        model.graph.node.insert(list(model.graph.node).index(node), dq_node)
    return shielded


def _input_channels(node: Any, inits: dict[str, Any]) -> int | None:
    """The channels (axis 1) of a float Conv/ConvTranspose/Gemm's input, from its weights."""
    weight = inits.get(node.input[1]) if len(node.input) > 1 else None
    if weight is None or weight.data_type != 1:   # a float initializer
        return None
    attrs = {a.name: a.i for a in node.attribute}
    dims = list(weight.dims)
    if node.op_type == "Conv":
        return int(dims[1] * attrs.get("group", 1))
    if node.op_type == "ConvTranspose":
        return int(dims[0])
    if node.op_type == "Gemm" and not attrs.get("transA", 0):
        return int(dims[1] if attrs.get("transB", 0) else dims[0])
    return None

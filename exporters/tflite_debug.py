"""TFLite per-layer quantization error and selective float, on one calibration.

``calibrate`` runs ``tf.lite.experimental.QuantizationDebugger`` once (the calibration is
the expensive part of an int8 conversion); from its calibrated model every later step is a
cheap re-quantization: the debug models of :func:`measure` (NumericVerify ops, per layer
and whole-model) and the mixed models of :func:`quantize` (denylisted nodes or ops stay in
float). int16x8 uses the same calibration with 16-bit activations.

>>> calibrated = calibrate(source, calibration)                       # doctest: +SKIP
>>> errors = measure(calibrated, x_val[:50])                          # doctest: +SKIP
>>> model = quantize(calibrated, denylisted_nodes=[errors[1].node])   # doctest: +SKIP
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core import interrupts
from exporters.diagnosis import TensorError, channel_spread, layer_of, relative_error
from exporters.spec import Calibration, KerasSource

_VERIFY = "NumericVerify"


@dataclass(frozen=True, eq=False)
class Calibrated:
    """A calibrated (not yet quantized) .tflite and the names of its op output tensors."""

    model: bytes
    op_outputs: dict[str, str]   # tensor name -> op type, in graph order
    weights: dict[str, int] = field(default_factory=dict)  # tensor name -> its op's weights

    def weights_of(self, nodes: Sequence[str]) -> int:
        """The weight values (constant inputs of 2 or more axes) of the ops making ``nodes``:
        what keeping them in float stores as float32 instead of int8."""
        return sum(self.weights.get(node, 0) for node in nodes)


def converter(tf: Any, source: KerasSource) -> Any:
    """The TFLiteConverter every TFLite file starts from (the source's one SavedModel), here
    so that tflite.py imports this module and not the other way round."""
    try:
        saved = source.saved_model
    except Exception as exc:  # a model that cannot be saved as a SavedModel converts directly
        interrupts.check(exc)
        return tf.lite.TFLiteConverter.from_keras_model(source.converted)
    _load_once(tf, source, saved)
    return tf.lite.TFLiteConverter.from_saved_model(str(saved))


class _Loaded:
    """One loaded SavedModel, held by its source's cache (and so freed with the source)."""

    def __init__(self, trackable: Any) -> None:
        self.trackable = trackable


# The SavedModels loaded by _load_once, while their sources live.
_LOADED: weakref.WeakValueDictionary[tuple[str, frozenset[str], int, int], _Loaded] = (
    weakref.WeakValueDictionary())


def _load_once(tf: Any, source: KerasSource, saved: Path) -> None:
    """Load the SavedModel ``saved`` once for all the converters made from ``source``.

    TensorFlow's converter loads a SavedModel in full twice per file (``from_saved_model``
    for its signatures, ``convert`` for the debug info; 2 s each for a 32 px MobileNetV2),
    through its module's private ``_load``. That loader is wrapped once per process to answer
    from the one load kept in ``source.cache`` while the source lives; any other path, or a
    SavedModel written again, loads as before, and where TensorFlow has no such loader (or
    is not eager, where it converts another way) nothing changes. The files are the same
    bytes (tests/test_export_tflite.py)."""
    try:
        from tensorflow.lite.python import lite
    except ImportError:
        return
    real = getattr(lite, "_load", None)
    key = _load_key(saved, None)
    if real is None or key is None or not tf.executing_eagerly():
        return
    real = getattr(real, "_edge_transfer_real", real)
    if not hasattr(lite._load, "_edge_transfer_real"):
        def load(path: Any, tags: Any = None, *args: Any, **kwargs: Any) -> Any:
            key = _load_key(path, tags)
            hit = _LOADED.get(key) if key is not None else None
            return hit.trackable if hit is not None else real(path, tags, *args, **kwargs)

        load._edge_transfer_real = real   # type: ignore[attr-defined]
        lite._load = load
    if key not in _LOADED:
        loaded = _Loaded(real(str(saved), set(key[1])))
        source.cache[f"tflite-loaded-{saved}"] = loaded   # alive as long as the source
        _LOADED[key] = loaded


def _load_key(path: Any, tags: Any) -> tuple[str, frozenset[str], int, int] | None:
    """What identifies one load: the folder, the tags (the converter's default: serve), and
    the graph file's inode and time (a folder written again is loaded again); None for a
    folder without ``saved_model.pb``."""
    try:
        stat = (Path(path) / "saved_model.pb").stat()
    except (OSError, TypeError):
        return None
    return str(path), frozenset(tags or ("serve",)), stat.st_ino, stat.st_mtime_ns


def representative(calibration: Calibration) -> Any:
    """The calibration as a converter's representative dataset."""
    def dataset() -> Any:
        for sample in calibration:
            yield [sample[calibration.input_name]]

    return dataset


def calibrate(source: KerasSource, calibration: Calibration) -> Calibrated:
    """Calibrate ``source`` once through the QuantizationDebugger; cached on the source.
    Per-layer work passes ``source.plain`` (the Keras model's own input); an int8-mixed
    file, the source behind the pixel adapter with its pixel calibration."""
    key = f"tflite-calibrated{source.key_suffix}-{id(calibration)}"
    if key not in source.cache:
        from edge_transfer.core.keras import load

        tf, _ = load()
        conv = converter(tf, source)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative(calibration)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=representative(calibration))
        model = bytes(debugger.calibrated_model)
        source.cache[key] = Calibrated(model, *_graph(model))
    calibrated: Calibrated = source.cache[key]
    return calibrated


def _interpreter(model: bytes, preserve: bool = False) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model, experimental_preserve_all_tensors=preserve)


def _graph(model: bytes) -> tuple[dict[str, str], dict[str, int]]:
    """(op output tensor name -> op type, op output tensor name -> the weight values of its
    op), in graph order. A weight is a constant input (produced by no op, not a graph
    input) of two or more axes: 1-axis biases stay 32-bit in int8 too."""
    interpreter = _interpreter(model)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    produced = {index for op in ops for index in op["outputs"]}
    produced |= {d["index"] for d in interpreter.get_input_details()}
    kinds: dict[str, str] = {}
    weights: dict[str, int] = {}
    for op in ops:
        held = sum(int(np.prod(details[i]["shape"])) for i in op["inputs"]
                   if i >= 0 and i in details and i not in produced
                   and len(details[i]["shape"]) >= 2)
        for index in op["outputs"]:
            if index in details:
                name = str(details[index]["name"])
                kinds.setdefault(name, op["op_name"])
                weights.setdefault(name, held)
    return kinds, weights


def quantize(calibrated: Calibrated, *, precision: str = "int8",
             denylisted_nodes: Sequence[str] = (), denylisted_ops: Sequence[str] = (),
             verify: str | None = None) -> bytes:
    """The calibrated model quantized (float input and output), keeping the denylisted op
    outputs / op types in float. ``verify``: ``"layer"`` or ``"model"`` adds NumericVerify
    ops comparing each op with float given quantized inputs, or along a float copy."""
    from tensorflow.lite.python import convert  # the quantizer the debugger itself calls

    from edge_transfer.core.keras import load

    load()
    inference = (convert._types_pb2.QUANTIZED_INT16 if precision == "int16x8"
                 else convert._types_pb2.QUANTIZED_INT8)
    return bytes(convert.mlir_quantize(
        calibrated.model, inference_type=inference,
        enable_numeric_verify=verify is not None,
        enable_whole_model_verify=verify == "model",
        denylisted_ops=list(denylisted_ops) or None,
        denylisted_nodes=list(denylisted_nodes) or None))


def _verified(model: bytes, x: np.ndarray, known: dict[str, str]
              ) -> tuple[list[str], dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]]:
    """Run a NumericVerify model on each sample; per verified tensor, the float reference and
    the dequantized quantized values. Names are those of the calibrated model."""
    interpreter = _interpreter(model, preserve=True)
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    pairs: list[tuple[str, int, int]] = []
    for op in interpreter._get_ops_details():
        if op["op_name"] == _VERIFY:
            quantized, reference = op["inputs"][:2]
            name = str(tensors[quantized]["name"])
            if name not in known and name[:-1] in known:   # the debug copy's suffix digit
                name = name[:-1]
            pairs.append((name, quantized, reference))
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], [1, *x.shape[1:]])
    interpreter.allocate_tensors()
    floats: dict[str, list[np.ndarray]] = {}
    quants: dict[str, list[np.ndarray]] = {}
    for k in range(len(x)):
        interpreter.set_tensor(inp["index"], x[k:k + 1].astype(np.float32))
        interpreter.invoke()
        for name, q_index, f_index in pairs:
            scale, zero_point = tensors[q_index]["quantization"]
            q = interpreter.get_tensor(q_index).astype(np.float32)
            floats.setdefault(name, []).append(interpreter.get_tensor(f_index).copy())
            quants.setdefault(name, []).append((q - zero_point) * scale if scale else q)
    return [name for name, _, _ in pairs], floats, quants


def measure(calibrated: Calibrated, x: np.ndarray, *, precision: str = "int8"
            ) -> list[TensorError]:
    """Per quantized op output, in graph order: the local error (the op run in float on the
    same quantized inputs) and the cumulative error (against a float copy of the graph)."""
    names, local_f, local_q = _verified(
        quantize(calibrated, precision=precision, verify="layer"), x, calibrated.op_outputs)
    _, whole_f, whole_q = _verified(
        quantize(calibrated, precision=precision, verify="model"), x, calibrated.op_outputs)
    rows = []
    for name in names:
        ref = np.concatenate(local_f[name])
        rows.append(TensorError(
            node=name, layer=layer_of(name), op_type=calibrated.op_outputs.get(name, "?"),
            local=relative_error(ref, np.concatenate(local_q[name])),
            cumulative=(relative_error(np.concatenate(whole_f[name]),
                                       np.concatenate(whole_q[name]))
                        if name in whole_f else float("nan")),
            value_range=float(np.max(ref) - np.min(ref)), channel_spread=channel_spread(ref)))
    return rows


def nodes_of(calibrated: Calibrated, layer: str) -> list[str]:
    """The op output tensors of Keras layer ``layer`` in the calibrated model."""
    return [name for name in calibrated.op_outputs
            if any(layer in part.split("/")[1:-1] for part in name.split(";"))]


def mixed(source: KerasSource, calibration: Calibration, keep_float: Sequence[str]) -> bytes:
    """int8 with ``keep_float`` (Keras layer names or TFLite op types such as ``MUL``) in
    float; raises UnsupportedExportError for a name that matches nothing. A Keras layer's
    name wins over an op type of the same name (``--keep-float auto`` names layers)."""
    from edge_transfer.core.errors import UnsupportedExportError
    from exporters.diagnosis import unknown_names

    calibrated = calibrate(source, calibration)
    kinds = {op.upper(): op for op in calibrated.op_outputs.values()}
    nodes: list[str] = []
    ops: list[str] = []
    unknown = []
    for name in keep_float:
        if found := nodes_of(calibrated, name):
            nodes += found
        elif name.upper() in kinds:
            ops.append(kinds[name.upper()])
        else:
            unknown.append(name)
    if unknown:
        layers = list(dict.fromkeys(layer_of(n) for n in calibrated.op_outputs))
        raise UnsupportedExportError(unknown_names(unknown, layers,
                                                   list(calibrated.op_outputs.values())))
    return quantize(calibrated, denylisted_nodes=nodes, denylisted_ops=ops)

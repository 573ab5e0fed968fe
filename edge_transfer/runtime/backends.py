"""The two native runtimes behind :class:`~edge_transfer.runtime.EdgeModel`, one class each.

Each backend loads one model file, describes its single input and output as
:class:`TensorInfo`, and runs a batch of raw (already quantized) input. LiteRT and
ONNX Runtime are imported here, lazily, only when a file of their format is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_transfer.core import interrupts
from edge_transfer.core.errors import ModelError, one_line
from edge_transfer.core.records.export import TensorRecord


@dataclass(frozen=True)
class TensorInfo:
    """One input or output: name, dtype and, for int8/uint8 tensors, scale and zero point;
    ``shape`` with ``-1`` for a dynamic axis (empty when not known).

    >>> t = TensorInfo("x", np.dtype(np.int8), scale=0.5, zero_point=-3)
    >>> t.quantize(np.array([1.0, -100.0], np.float32)).tolist()
    [-1, -128]
    >>> t.dequantize(np.array([-1], np.int8)).tolist()
    [1.0]
    """

    name: str
    dtype: np.dtype
    scale: float | None = None
    zero_point: int | None = None
    shape: tuple[int, ...] = ()

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """float32 -> this tensor's integer dtype, rounded and clipped (vectorised)."""
        if self.scale is None:
            return x if x.dtype == self.dtype else x.astype(self.dtype)
        limits = np.iinfo(self.dtype)
        with np.errstate(over="ignore"):  # beyond float32: +-inf, clipped below
            q = np.rint(x / np.float32(self.scale)) + np.float32(self.zero_point or 0)
        np.maximum(q, limits.min, out=q)
        np.minimum(q, limits.max, out=q)
        return q.astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """This tensor's integers -> float32."""
        if self.scale is None:
            return q if q.dtype == np.float32 else q.astype(np.float32)
        return (q.astype(np.float32) - np.float32(self.zero_point or 0)) * np.float32(self.scale)

    def to_record(self) -> TensorRecord:
        """This tensor as its row in ``export.json``."""
        return TensorRecord(name=self.name, shape=self.shape, dtype=self.dtype.name,
                            scale=self.scale, zero_point=self.zero_point)


class Backend(Protocol):
    runtime: str
    input: TensorInfo
    output: TensorInfo

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def run_float(backend: Backend, x: np.ndarray) -> np.ndarray:
    """float32 input (already preprocessed) -> float32 outputs, quantizing and dequantizing
    where the file's input or output is an integer tensor: what the device computes.

    The export check of every artifact runs this, so what was checked at export is the very
    code that runs on the device (:class:`~edge_transfer.runtime.EdgeModel` is this with
    the preprocessing in front).
    """
    return backend.output.dequantize(backend.run(backend.input.quantize(
        np.ascontiguousarray(x, dtype=np.float32))))


def open_backend(model: Path | bytes, threads: int | None = None,
                 format: str | None = None) -> Backend:
    """The backend of a model file (by its suffix) or of its bytes (``format`` given)."""
    if isinstance(model, bytes):
        data, kind = model, format
    else:
        data, kind = read_model_bytes(Path(model)), format or Path(model).suffix.lstrip(".")
    if kind not in BACKENDS:
        raise ModelError(f"unknown model format {kind!r}; expected one of {', '.join(BACKENDS)}")
    return BACKENDS[kind](data, threads)


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    shape = tuple(int(d) for d in detail.get("shape_signature", detail.get("shape", ())))
    if dtype.kind in "iu" and scale:
        return TensorInfo(detail["name"], dtype, float(scale), int(zero_point), shape)
    return TensorInfo(detail["name"], dtype, shape=shape)


def litert_load_error(reason: str) -> str:
    """Why LiteRT refused a model, and what to do: a node it cannot prepare (an op or a
    quantization this runtime cannot run) is not a damaged file.

    >>> litert_load_error("kernel_util.cc:349 no_integer_overflow_from_quantization was not "
    ...                   "true.Node number 15 (DEPTHWISE_CONV_2D) failed to prepare.")[:70]
    'LiteRT cannot prepare node 15 (DEPTHWISE_CONV_2D): kernel_util.cc:349 '
    >>> litert_load_error("Model provided has model identifier 'abcd'")[-64:]
    'the file is damaged or not a .tflite: copy it or export it again'
    """
    node = re.search(r"Node number (\d+) \((\w+)\) failed to prepare", reason)
    if node is None:
        return (f"LiteRT cannot load this model ({reason}); the file is damaged or not a "
                ".tflite: copy it or export it again")
    return (f"LiteRT cannot prepare node {node[1]} ({node[2]}): "
            f"{reason[:node.start()].strip(' .')}; this runtime cannot run that op as "
            "converted (e.g. an int16x8 depthwise convolution whose scales overflow its "
            "integer arithmetic): use another precision")


class LiteRTBackend:
    """A .tflite file on ``ai_edge_litert.interpreter.Interpreter``."""

    runtime = "litert"

    def __init__(self, data: bytes, threads: int | None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_content=data, num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            interrupts.check(exc)
            raise ModelError(litert_load_error(one_line(exc))) from exc
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"expected a classifier with 1 input and 1 output, found {len(inputs)} and "
                f"{len(outputs)}; export it with `edge-transfer export`"
            )
        self._in, self._out = inputs[0]["index"], outputs[0]["index"]
        self.input, self.output = _tensor_info(inputs[0]), _tensor_info(outputs[0])
        self._batch = int(inputs[0]["shape"][0])

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self._batch:
            self.interpreter.resize_tensor_input(self._in, list(batch.shape))
            self.interpreter.allocate_tensors()
            self._batch = len(batch)
        self.interpreter.set_tensor(self._in, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out)


# ONNX Runtime's WeightBiasQuantization rewrites a float Conv/Gemm that sits between a
# DequantizeLinear and a QuantizeLinear to per-tensor int8 weights at load time. That is
# exactly a layer an int8-mixed export kept in float on purpose: files written since
# int8-mixed files take pixels shield those layers from it (exporters/onnx_debug.py,
# shield_float_layers), and run, like every other file, with ONNX Runtime's defaults, as a
# client's plain InferenceSession runs them (a QAT file's float biases are quantized and its
# convolutions fused into integer kernels there too). Older files run with it off.
ORT_DISABLED_OPTIMIZERS = ("WeightBiasQuantization",)


def written_before_pixels_in(props: dict[str, str]) -> bool:
    """Whether an .onnx's ``metadata_props`` come from before files took RGB pixels (no
    readable entry of ours, or no ``in_graph`` in it): such a file may hold unshielded float
    layers inside int8 (int8-mixed) and runs with :data:`ORT_DISABLED_OPTIMIZERS` off.

    >>> from edge_transfer.core.preprocessing import Preprocessing
    >>> from edge_transfer.runtime.metadata import ModelMetadata
    >>> meta = ModelMetadata(("a",), Preprocessing(8, 8))
    >>> written_before_pixels_in({"edge_transfer": meta.pixels_in().to_json()})
    False
    >>> written_before_pixels_in({"edge_transfer": meta.to_json()})
    True
    >>> written_before_pixels_in({})
    True
    """
    from edge_transfer.runtime.metadata import METADATA_KEY, ModelMetadata

    if METADATA_KEY not in props:
        return True
    try:
        return ModelMetadata.from_json(props[METADATA_KEY]).in_graph is None
    except ModelError:
        return True


class OnnxBackend:
    """An .onnx file on ``onnxruntime.InferenceSession`` (CPU), dynamic batch axis."""

    runtime = "onnxruntime"

    def __init__(self, data: bytes, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no optimizer chatter on stderr
        try:
            self.session = ort.InferenceSession(data, sess_options=options,
                                                providers=["CPUExecutionProvider"])
            if written_before_pixels_in(self.metadata()):
                self.session = ort.InferenceSession(
                    data, sess_options=options, providers=["CPUExecutionProvider"],
                    disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            interrupts.check(exc)
            raise ModelError(f"ONNX Runtime cannot load this model ({one_line(exc)}); the file is "
                             "damaged or not an .onnx: copy or export it again") from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"expected a classifier with 1 input and 1 output, found {len(inputs)} and "
                f"{len(outputs)}; export it with `edge-transfer export`"
            )
        self.input = _onnx_tensor(inputs[0])
        if self.input.dtype.kind in "iu":
            raise ModelError(f"the ONNX input is {self.input.dtype} without quantization "
                             "parameters; export the ONNX model with float input (QDQ inside)")
        self.output = _onnx_tensor(outputs[0])
        self._out_names = [outputs[0].name]
        first = inputs[0].shape[0] if inputs[0].shape else None
        self._fixed = first if isinstance(first, int) and first > 0 else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._fixed is None or len(batch) == self._fixed:
            return self.session.run(self._out_names, {self.input.name: batch})[0]
        if self._fixed != 1:
            raise ModelError(f"this ONNX model takes batches of exactly {self._fixed}; export "
                             "it with a dynamic batch axis")
        return np.concatenate([self.session.run(self._out_names, {self.input.name: x[None]})[0]
                               for x in batch])

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)


_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
               "tensor(float16)": np.float16}


def _onnx_tensor(arg: Any) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else -1 for d in (arg.shape or ()))
    return TensorInfo(arg.name, _onnx_dtype(arg.type), shape=shape)


def _onnx_dtype(name: str) -> np.dtype:
    if name not in _ONNX_TYPES:
        raise ModelError(f"unsupported ONNX tensor type {name}; export a float32 model")
    return np.dtype(_ONNX_TYPES[name])


BACKENDS: dict[str, type[LiteRTBackend] | type[OnnxBackend]] = {
    "tflite": LiteRTBackend, "onnx": OnnxBackend}
"""The runtime of each model format, by the format's name (= its file suffix)."""


def read_model_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelError(f"{path} does not exist; check the path") from exc
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not data:
        raise ModelError(f"{path} is empty; copy the model file again")
    return data

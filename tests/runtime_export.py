"""A stand-in for the exporters (issue 3): a run directory -> an export folder per the contract.

One function, :func:`export_folder`, writes ``RUN/export/`` with ``export.json`` (schema 1)
and four self-describing model files: TFLite fp32, TFLite full int8 (int8 input and output),
ONNX fp32 (dynamic batch) and ONNX static int8 (QDQ). Swap it for
``edge_transfer.export.export_run`` once that lands.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import time
from pathlib import Path

import numpy as np


@functools.cache
def export_folder(run_dir: Path) -> Path:
    """Export ``run_dir`` once per session; returns the folder holding export.json."""
    import onnx
    import tf2onnx
    from ai_edge_litert.interpreter import Interpreter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from edge_transfer._keras import load
    from edge_transfer.metadata import ModelMetadata, embed_in_onnx, embed_in_tflite
    from edge_transfer.runs import Run, write_json

    tf, keras = load()
    run = Run.open(run_dir)
    out = run.path / "export"
    out.mkdir(exist_ok=True)
    model = keras.models.load_model(run.model_path)
    meta = ModelMetadata(run.labels, run.preprocessing)
    x_train, _ = run.split_arrays("train")
    x_val, y_val = run.split_arrays("val")
    keras_probs = model.predict(x_val, verbose=0)
    float_accuracy = float(np.mean(keras_probs.argmax(1) == y_val))
    calib = x_train[:100]

    def tflite(int8: bool) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([x[None]] for x in calib)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return embed_in_tflite(converter.convert(), meta)

    def onnx_fp32() -> bytes:
        spec = [tf.TensorSpec((None, *run.preprocessing.input_shape), tf.float32, name="input")]
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
        embed_in_onnx(proto, meta)
        return proto.SerializeToString()

    class Calibration(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.items = iter([{name: x[None]} for x in calib])

        def get_next(self):  # type: ignore[override]
            return next(self.items, None)

    def onnx_int8(fp32_path: Path) -> bytes:
        name = onnx.load(str(fp32_path)).graph.input[0].name
        tmp = out / ".int8.onnx.tmp"
        quantize_static(str(fp32_path), str(tmp), Calibration(name),
                        quant_format=QuantFormat.QDQ)
        proto = onnx.load(str(tmp))
        tmp.unlink()
        embed_in_onnx(proto, meta)
        return proto.SerializeToString()

    def run_tflite(path: Path) -> np.ndarray:
        interp = Interpreter(model_path=str(path))
        inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
        interp.resize_tensor_input(inp["index"], [len(x_val), *inp["shape"][1:]])
        interp.allocate_tensors()
        x = x_val
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(outp["index"])
        if outp["dtype"] != np.float32:
            scale, zero = outp["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    def run_onnx(path: Path) -> np.ndarray:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x_val})[0]

    def io_details(path: Path, fmt: str) -> tuple[list[dict], list[dict]]:
        if fmt == "tflite":
            interp = Interpreter(model_path=str(path))
            def row(d: dict) -> dict:
                quantized = d["dtype"] != np.float32
                return {"name": d["name"], "shape": [int(v) for v in d["shape_signature"]],
                        "dtype": np.dtype(d["dtype"]).name,
                        "scale": float(d["quantization"][0]) if quantized else None,
                        "zero_point": int(d["quantization"][1]) if quantized else None}
            return ([row(d) for d in interp.get_input_details()],
                    [row(d) for d in interp.get_output_details()])
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        def orow(a) -> dict:
            shape = [d if isinstance(d, int) else -1 for d in a.shape]
            return {"name": a.name, "shape": shape, "dtype": "float32",
                    "scale": None, "zero_point": None}
        return [orow(a) for a in session.get_inputs()], [orow(a) for a in session.get_outputs()]

    artifacts = []
    plan = [("tflite", "fp32", "model-fp32.tflite", lambda: tflite(False)),
            ("tflite", "int8", "model-int8.tflite", lambda: tflite(True)),
            ("onnx", "fp32", "model-fp32.onnx", onnx_fp32),
            ("onnx", "int8", "model-int8.onnx", lambda: onnx_int8(out / "model-fp32.onnx"))]
    for fmt, precision, file, make in plan:
        start = time.perf_counter()
        data = make()
        path = out / file
        tmp = out / f".{file}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)
        probs = run_tflite(path) if fmt == "tflite" else run_onnx(path)
        accuracy = float(np.mean(probs.argmax(1) == y_val))
        max_diff = float(np.abs(probs - keras_probs).max())
        tolerance = 1e-4 if precision == "fp32" else None
        inputs, outputs = io_details(path, fmt)
        artifacts.append({
            "name": f"{fmt}-{precision}", "format": fmt, "precision": precision, "qat": False,
            "sparsity": None, "io": "int8" if fmt == "tflite" and precision == "int8" else "float",
            "status": "ok", "reason": None, "file": file, "bytes": len(data),
            "gzip_bytes": len(gzip.compress(data)), "sha256": hashlib.sha256(data).hexdigest(),
            "inputs": inputs, "outputs": outputs,
            "check": {"samples": len(y_val), "max_abs_diff": max_diff,
                      "top1_agreement": float(np.mean(probs.argmax(1) == keras_probs.argmax(1))),
                      "accuracy": accuracy, "tolerance": tolerance,
                      "passed": tolerance is None or max_diff <= tolerance},
            "accuracy": accuracy, "seconds": time.perf_counter() - start,
        })
    artifacts.append({"name": "tflite-int16x8", "format": "tflite", "precision": "int16x8",
                      "qat": False, "sparsity": None, "io": "float", "status": "failed",
                      "reason": "not produced by the test fixture", "file": None})
    write_json(out / "export.json", {
        "schema_version": 1, "run": str(run.path), "data_fingerprint": run.data_fingerprint,
        "labels": list(run.labels), "preprocessing": run.preprocessing.to_dict(),
        "float_accuracy": float_accuracy, "artifacts": artifacts,
    })
    return out


@functools.cache
def bundle_folder(run_dir: Path) -> Path:
    """``create_bundle`` of the exported run, once per session (tests that tamper copy it)."""
    from edge_transfer.bundle import create_bundle

    export_folder(run_dir)
    return create_bundle(run_dir, run_dir.parent / f"{run_dir.name}-bundle")

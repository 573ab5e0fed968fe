"""edge_transfer.runtime: TensorFlow-free, same predictions as the exporters' check."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _export_shared import export_integer_io
from conftest import REPO_ROOT, run_cli, run_main
from runtime_export import CORE, export_folder

from edge_transfer.core.errors import ModelError
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.samples import decode
from edge_transfer.runtime import EdgeModel
from edge_transfer.runtime.backends import TensorInfo
from edge_transfer.runtime.metadata import ModelMetadata
from edge_transfer.train.runs import Run


@pytest.fixture(scope="session")
def digits_export(digits_run: Path) -> Path:
    return export_folder(digits_run)


@pytest.fixture(scope="session")
def int8_io_export(digits_run: Path) -> Path:
    """A full-integer .tflite with int8 input and output (``--io int8``), by the exporter."""
    return export_integer_io(digits_run, "int8").out_dir


def ok_artifacts(export_dir: Path) -> list[dict]:
    export = json.loads((export_dir / "export.json").read_text())
    return [a for a in export["artifacts"] if a["status"] == "ok"]


def test_runtime_and_cli_help_never_import_tensorflow(digits_export: Path) -> None:
    files = [str(digits_export / a["file"]) for a in ok_artifacts(digits_export)]
    code = f"""
import sys, numpy as np
import edge_transfer.runtime, edge_transfer.deploy.bundle, devices
from edge_transfer.cli import main
for f in {files!r}:
    m = edge_transfer.runtime.EdgeModel.load(f)
    assert m.predict(np.zeros((3, 8, 8), np.uint8)).probabilities.shape == (3, 5)
try:
    main(["--help"])
except SystemExit:
    pass
for name in ("bundle", "validate", "predict", "devices"):
    try:
        main([name, "--help"])
    except SystemExit:
        pass
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras"))
assert not bad, bad
print("clean")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("clean")


@pytest.mark.parametrize("trained_again", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["post-training", "qat-and-pruned"])
def test_predictions_equal_the_export_check(digits_run: Path, trained_again: bool) -> None:
    """Every artifact of the real export (the whole one, QAT and pruning included, when
    ``trained_again``), on the split export.json checked (test): the runtime's accuracy and
    per-sample predictions are the exporter's; fp32 agrees with Keras on every top-1."""
    from _export_shared import export_all, export_post_training

    from edge_transfer.core.keras import load
    from edge_transfer.export.variant import CheckData

    digits_export = (export_all if trained_again else export_post_training)(digits_run).out_dir

    _, keras = load()
    run = Run.open(digits_run)
    val = run.splits.test
    keras_top1 = keras.models.load_model(run.model_path).predict(
        run.preprocessing.apply(val.x), verbose=0).argmax(1)
    artifacts = ok_artifacts(digits_export)
    assert set(CORE) <= {a["name"] for a in artifacts}
    # every TFLite and ONNX precision (8), and QAT and pruned ones when trained again
    assert len(artifacts) >= (10 if trained_again else 8)
    for artifact in artifacts:
        name = artifact["name"]
        model = EdgeModel.load(digits_export / artifact["file"], threads=1)
        # the export check's batches: ONNX dynamic quantizes activations per batch, so its top-1
        # may change with the batch's other images (1 of 225 seen at batch 32)
        prediction = model.predict(val.x, batch_size=CheckData.batch_size)
        accuracy = float(np.mean(prediction.indices == val.y))
        assert accuracy == pytest.approx(artifact["check"]["accuracy"], abs=1e-9), name
        assert artifact["check"]["samples"] == len(val.y)
        assert decode(artifact["check"]["predictions"]).tolist() == prediction.indices.tolist()
        if artifact["precision"] == "fp32":
            assert artifact["check"]["top1_agreement"] == 1.0, name
        if not artifact["qat"] and not artifact["sparsity"]:  # the check's reference: Keras
            agreement = float(np.mean(prediction.indices == keras_top1))
            assert agreement == pytest.approx(artifact["check"]["top1_agreement"],
                                              abs=1e-9), name
            if artifact["precision"] == "fp32":
                assert agreement == 1.0, name
        assert prediction.labels[:3] == tuple(run.labels[i] for i in prediction.indices[:3])
        assert np.allclose(prediction.probabilities.sum(1), 1, atol=0.02)


def test_int8_io_is_quantized_and_batches_agree(int8_io_export: Path, digits_run: Path) -> None:
    model = EdgeModel.load(int8_io_export / "model-int8.tflite")
    assert model.backend.input.dtype == np.int8 and model.backend.input.quantized
    x = Run.open(digits_run).splits.test.x
    whole = model.predict(x, batch_size=1000).probabilities
    for batch_size in (1, 7, 64):
        assert np.array_equal(model.predict(x, batch_size=batch_size).probabilities, whole)
    top = model.predict(x[:2], top_k=3)
    assert top.top_indices.shape == (2, 3)
    assert [t[0][0] for t in top.top()] == list(top.labels)
    assert top.top()[0][0][1] >= top.top()[0][1][1] >= top.top()[0][2][1]
    bigger = np.kron(x[:4, ..., 0], np.ones((2, 2), np.uint8))  # 16x16 gray, resized back
    assert model.predict(bigger).probabilities.shape == (4, 5)


def test_evaluate_reports_accuracy_confusion_latency_memory(
    digits_export: Path, digits_run: Path
) -> None:
    test = Run.open(digits_run).splits.test
    evaluation = EdgeModel.load(digits_export / "model-fp32.onnx", threads=1).evaluate(
        test.x, test.y, latency_samples=20)
    assert evaluation.accuracy > 0.9
    assert evaluation.confusion_matrix.sum() == len(test.y) == evaluation.samples
    assert np.trace(evaluation.confusion_matrix) / len(test.y) == pytest.approx(
        evaluation.accuracy)
    assert len(evaluation.per_class_accuracy) == 5
    latency = evaluation.latency_ms
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert evaluation.throughput_fps > 0 and evaluation.peak_memory_mb > 10
    json.dumps(evaluation.to_dict())


def test_quantize_and_dequantize_are_vectorised_and_clipped() -> None:
    info = TensorInfo("x", np.dtype(np.int8), scale=0.5, zero_point=-3)
    q = info.quantize(np.array([[0.0, 1.0, -100.0, 100.0]], np.float32))
    assert q.dtype == np.int8 and q.tolist() == [[-3, -1, -128, 127]]
    assert info.dequantize(q).tolist() == [[0.0, 1.0, -62.5, 65.0]]
    u = TensorInfo("y", np.dtype(np.uint8), scale=1 / 256, zero_point=0)
    assert u.dequantize(np.array([0, 128, 255], np.uint8)).tolist() == [0, 0.5, 255 / 256]


def damaged_copies(source: Path, folder: Path) -> list[Path]:
    data = source.read_bytes()
    header = bytearray(data)
    header[:64] = bytes(b ^ 0xFF for b in header[:64])
    scattered = bytearray(data)
    for i in random.Random(0).sample(range(len(data)), 200):
        scattered[i] ^= 0xFF
    out = []
    for kind, content in (("truncated", data[: len(data) // 2]), ("header", bytes(header)),
                          ("scattered", bytes(scattered)), ("empty", b"")):
        path = folder / f"{kind}{source.suffix}"
        path.write_bytes(content)
        out.append(path)
    return out


@pytest.mark.parametrize("file", ["model-fp32.tflite", "model-int8.onnx"])
def test_damaged_model_files_raise_model_error(digits_export: Path, tmp_path: Path,
                                               file: str) -> None:
    for path in damaged_copies(digits_export / file, tmp_path):
        with pytest.raises(ModelError, match=r"damaged|empty|truncated") as info:
            EdgeModel.load(path)
        assert str(path) in str(info.value)
    with pytest.raises(ModelError, match=r"expected \.tflite or \.onnx"):
        EdgeModel.load(tmp_path / "model.pb")
    with pytest.raises(ModelError, match="does not exist"):
        EdgeModel.load(tmp_path / "missing.tflite")


def test_predict_cli_top_k_and_damaged_file(digits_export: Path, digits_run: Path,
                                            tmp_path: Path) -> None:
    from PIL import Image

    test = Run.open(digits_run).splits.test
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(test.x[i, ..., 0]).save(paths[-1])
    model_path = digits_export / "model-int8.tflite"
    proc = run_main("predict", str(model_path), *map(str, paths), "--top-k", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    expected = EdgeModel.load(model_path).predict(test.x[:3]).labels
    assert [r["top"][0]["label"] for r in rows] == list(expected)
    assert all(len(r["top"]) == 2 for r in rows)
    table = run_main("predict", str(model_path), str(paths[0]), "--top-k", "3")
    assert table.returncode == 0 and expected[0] in table.stdout
    damaged = damaged_copies(model_path, tmp_path)[0]
    proc = run_cli("predict", str(damaged), str(paths[0]))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("pre", [
    Preprocessing(8, 8, 1),
    Preprocessing(8, 8, 3, mean=(10.0, 20.0, 30.0), std=(2.0, 3.0, 4.0), channel_order="bgr"),
    Preprocessing(6, 6, 3, mean=(127.5,), std=(127.5,)),
])
def test_prepare_equals_quantized_preprocessing(int8_io_export: Path, digits_export: Path,
                                                pre: Preprocessing) -> None:
    """The lookup-table fast path is exactly ``quantize(Preprocessing.apply(images))``."""
    images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 3)).astype(np.uint8)
    for path in (int8_io_export / "model-int8.tflite", digits_export / "model-fp32.onnx"):
        loaded = EdgeModel.load(path)
        model = EdgeModel(loaded.path, loaded.backend, ModelMetadata(("a", "b"), pre))
        expected = model.backend.input.quantize(pre.apply(images))
        assert np.array_equal(model.prepare(images), expected)
        assert model.prepare(images).dtype == model.backend.input.dtype


def test_onnx_with_a_fixed_batch_of_one_runs_image_by_image(digits_export: Path,
                                                            digits_run: Path,
                                                            tmp_path: Path) -> None:
    import onnx

    proto = onnx.load(str(digits_export / "model-fp32.onnx"))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(proto, str(tmp_path / "fixed.onnx"))
    x = Run.open(digits_run).splits.test.x[:10]
    fixed = EdgeModel.load(tmp_path / "fixed.onnx").predict(x).probabilities
    dynamic = EdgeModel.load(digits_export / "model-fp32.onnx").predict(x).probabilities
    assert np.allclose(fixed, dynamic, atol=1e-6)

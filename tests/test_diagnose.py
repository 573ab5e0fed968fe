"""Diagnosis and float fallback on a model with one layer made to quantize badly on purpose.

The trap (tests/_bad_layer.py): conv2 reads a dead channel through weights 1000x the others,
so int8 per-channel weight rounding zeroes the rest of conv2 and the model falls to chance.
The diagnosis must name conv2, and --keep-float auto must keep exactly conv2 in float.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _bad_layer import TRAP, write_bad_layer_run
from _export_shared import weight_bytes
from conftest import run_main

from edge_transfer.core.errors import UnsupportedExportError
from edge_transfer.export.config import ExportConfig
from edge_transfer.export.diagnose import DiagnoseConfig, diagnose_run, load_diagnoses
from edge_transfer.export.pipeline import ExportResult, export_run


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bad_layer_run(tmp_path_factory.mktemp("bad_layer_run"))


@pytest.fixture(scope="module")
def mixed_export(bad_run: Path) -> ExportResult:
    return export_run(bad_run, ExportConfig(precisions=("fp32", "int8"), keep_float=("auto",),
                                            out=bad_run / "export-mixed"))


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_diagnosis_names_the_trap_first(bad_run: Path, fmt: str, tmp_path: Path) -> None:
    diagnosis = diagnose_run(bad_run, DiagnoseConfig(format=fmt, samples=32, out=tmp_path))
    worst = diagnosis.layers[0]
    assert worst.layer == TRAP
    assert worst.local > 0.5 and worst.local > 5 * diagnosis.layers[1].local
    assert "weights to zero" in worst.reading
    # int8 really breaks the model: near chance (5 classes) against a float model far above.
    assert diagnosis.float_accuracy > diagnosis.quantized_accuracy + 0.3
    by_depth = {la.layer: la for la in diagnosis.layers}
    assert by_depth["conv1"].cumulative < 0.1 < by_depth[TRAP].cumulative
    # One layer with a cause of its own: no sign of a wrong input range nor of spread error.
    assert diagnosis.signs == (), diagnosis.signs
    # What is written is what was measured, and the plot is a PNG.
    assert load_diagnoses(tmp_path)[0] == diagnosis
    assert (tmp_path / str(diagnosis.plot)).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_keep_float_auto_keeps_exactly_the_trap(mixed_export: ExportResult, fmt: str) -> None:
    int8, mixed = mixed_export.get(f"{fmt}-int8"), mixed_export.get(f"{fmt}-int8-mixed")
    assert not int8.ok and mixed.ok, mixed.reason
    assert mixed.spec.keep_float == (TRAP,)
    # 225 validation images: int8 is at chance, mixed within the 5-point budget of float.
    assert mixed.accuracy >= mixed_export.float_accuracy - 0.05
    assert mixed.accuracy >= int8.accuracy + 0.3
    # the float layer costs weights (compared as weights: the int8 file also holds the pixel
    # adapter and its quantization nodes, the int8-mixed one not); the file stays small
    assert _weight_bytes(int8.path) < _weight_bytes(mixed.path)
    assert mixed.bytes < 1.6 * int8.bytes
    record = json.loads(mixed_export.path.read_text())
    row = next(a for a in record["artifacts"] if a["name"] == f"{fmt}-int8-mixed")
    assert row["kept_float"] == [TRAP] and "kept 1 layer(s)" in row["notes"][0]
    # Plain int8 was tried first and is significantly below float; one more conversion
    # (after measuring) kept the trap, well under the 1.5x byte cap.
    search = mixed.keep_float_search
    assert search is not None and search.measured and search.within_budget
    assert search.conversions == 2 and [t.layers for t in search.tries] == [0, 1]
    assert search.tries[0].vs_float.p_value < 0.05 and search.bytes_ratio <= 1.5
    assert row["keep_float_search"]["conversions"] == 2


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_int8_mixed_file_runs_in_a_bare_client(mixed_export: ExportResult, fmt: str) -> None:
    """An int8-mixed file takes RGB pixels like every other file, names its float layers, and
    a client given only the file (a bare LiteRT interpreter; a default ONNX Runtime session,
    whose WeightBiasQuantization would quantize the float trap layer back to int8 and put the
    model at chance) gives our runtime's answers."""
    from clients import litert, onnxruntime, rgb, same_labels

    from edge_transfer.runtime import EdgeModel
    from edge_transfer.runtime.metadata import read_metadata
    from edge_transfer.train.runs import Run

    mixed = mixed_export.get(f"{fmt}-int8-mixed")
    meta = read_metadata(mixed.path)
    assert meta.in_graph is not None and meta.preprocessing.channels == 3
    assert meta.keep_float == (TRAP,)
    ours = EdgeModel.load(mixed.path)
    run = Run.open(mixed_export.run)
    x, y = run.split_arrays("test")
    pixels = run.preprocessing.rgb_pixels(x).astype(np.uint8)   # the images, as decoded
    got = {"tflite": litert, "onnx": onnxruntime}[fmt](
        mixed.path, rgb(pixels, ours.preprocessing.height, ours.preprocessing.width))
    expected = ours.predict(pixels).indices
    assert np.mean(same_labels(got, [ours.labels[i] for i in expected])) >= 0.99
    truth = [ours.labels[i] for i in y]
    assert np.mean(same_labels(got, truth)) >= mixed_export.float_accuracy - 0.05


def test_int8_mixed_onnx_without_its_shield_breaks_in_a_default_session(
        mixed_export: ExportResult, tmp_path: Path) -> None:
    """The per-channel DequantizeLinear in front of the float trap layer is what keeps a
    default session from quantizing it (without it: at chance). A file written the old way
    (no shield, no ``in_graph`` in our entry) still runs right in our runtime, which turns
    WeightBiasQuantization off for such files."""
    import onnx
    import onnxruntime as ort

    from edge_transfer.runtime import EdgeModel
    from edge_transfer.runtime.metadata import METADATA_KEY
    from edge_transfer.train.runs import Run

    model = onnx.load(str(mixed_export.get("onnx-int8-mixed").path))
    graph = model.graph
    (shield,) = [n for n in graph.node if n.name.endswith("_input_per_channel_DequantizeLinear")]
    (shared,) = [n for n in graph.node if n.op_type == "DequantizeLinear"
                 and n.input[0] == shield.input[0] and n is not shield]
    for node in graph.node:
        node.input[:] = [shared.output[0] if i == shield.output[0] else i for i in node.input]
    graph.node.remove(shield)
    run = Run.open(mixed_export.run)
    x, y = run.split_arrays("test")
    pixels = run.preprocessing.rgb_pixels(x)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    unshielded = session.run(None, {session.get_inputs()[0].name: pixels})[0].argmax(1)
    assert np.mean(unshielded == y) < mixed_export.float_accuracy - 0.3   # the trap again
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            entry = json.loads(prop.value)
            del entry["in_graph"]
            prop.value = json.dumps(entry)
    old = tmp_path / "old-int8-mixed.onnx"
    onnx.save(model, str(old))
    accuracy = np.mean(EdgeModel.load(old).predict(pixels.astype(np.uint8)).indices == y)
    assert accuracy >= mixed_export.float_accuracy - 0.05


def test_keep_float_auto_keeps_nothing_when_int8_is_fine(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same model without the trap: plain int8 is within budget, so no layer is kept,
    the per-layer errors are never measured (one conversion per format), and the variant
    says it is plain int8."""
    from edge_transfer.export.diagnose import Quantizer

    def measured(*_: object) -> None:
        raise AssertionError("per-layer errors measured although plain int8 is fine")

    monkeypatch.setattr(Quantizer, "measure", measured)
    fine = write_bad_layer_run(tmp_path_factory.mktemp("fine_run"), trap=False)
    result = export_run(fine, ExportConfig(precisions=("int8",), keep_float=("auto",),
                                           out=fine / "export"))
    for fmt in ("tflite", "onnx"):
        int8, mixed = result.get(f"{fmt}-int8"), result.get(f"{fmt}-int8-mixed")
        assert int8.ok and mixed.ok, (int8.reason, mixed.reason)
        assert mixed.spec.keep_float == ()
        search = mixed.keep_float_search
        assert search is not None and search.within_budget and not search.measured
        assert search.conversions == 1 and search.bytes_ratio == 1.0
        assert "no layer needed" in search.stopped
        assert "kept 0 layer(s) in float (none: no layer needed, this file is plain int8)" \
            in mixed.notes[0]
        assert mixed.bytes is not None and int8.bytes is not None
        assert mixed.bytes < 1.05 * int8.bytes


def test_keep_float_by_name_and_unknown_names(bad_run: Path, tmp_path: Path) -> None:
    result = export_run(bad_run, ExportConfig(formats=("tflite",), precisions=("int8",),
                                              keep_float=(TRAP,), out=tmp_path))
    assert result.get("tflite-int8-mixed").ok
    result = export_run(bad_run, ExportConfig(formats=("tflite",), precisions=("int8",),
                                              keep_float=("nosuchlayer",), out=tmp_path))
    reason = result.get("tflite-int8-mixed").reason
    assert "nosuchlayer matches no layer" in reason and TRAP in reason
    with pytest.raises(UnsupportedExportError, match="--keep-float takes auto"):
        ExportConfig(keep_float=("auto", TRAP))


def test_int8_failure_advice_names_the_step_that_works(mixed_export: ExportResult) -> None:
    reason = mixed_export.get("tflite-int8").reason
    assert "tflite-int8-mixed" in reason


def test_report_links_the_diagnosis_and_lists_kept_layers(bad_run: Path,
                                                          mixed_export: ExportResult,
                                                          tmp_path: Path) -> None:
    from edge_transfer.report.build import build_report

    diagnose_run(bad_run, DiagnoseConfig(samples=16, out=mixed_export.out_dir))
    build_report(bad_run, tmp_path, export_json=mixed_export.out_dir)
    markdown = (tmp_path / "report.md").read_text()
    assert "![tflite int8 error against depth](diagnose-tflite-int8.png)" in markdown
    assert (tmp_path / "diagnose-tflite-int8.png").is_file()
    assert f"**tflite-int8-mixed**: {TRAP}" in markdown
    rows = json.loads((tmp_path / "report.json").read_text())["artifacts"]
    assert any(row["name"] == "tflite-int8-mixed" for row in rows)  # in the Pareto plot too


def test_diagnose_cli(bad_run: Path, tmp_path: Path) -> None:
    done = run_main("diagnose", str(bad_run), "--samples", "16", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert TRAP in done.stdout and "weights to zero" in done.stdout
    assert json.loads((tmp_path / "diagnose.json").read_text())["diagnoses"][0]["layers"][0][
        "layer"] == TRAP
    done = run_main("diagnose", str(bad_run), "--format", "onnx", "--precision", "int16x8")
    assert done.returncode == 2 and done.stderr.startswith("error: diagnose cannot measure")


def test_coral_skips_mixed_models_with_the_reason() -> None:
    from devices.profile import load_profile

    coral, pi = load_profile("coral-dev-board"), load_profile("raspberry-pi-5")
    assert "fully int8 models only" in (coral.cannot_run("tflite", "int8", (TRAP,)) or "")
    assert coral.cannot_run("tflite", "int8") is None
    assert pi.cannot_run("tflite", "int8", (TRAP,)) is None


def test_trap_really_is_float_harmless(bad_run: Path) -> None:
    """The trap changes nothing in float: the dead channel is exactly zero on the data."""
    from edge_transfer.core.keras import load
    from edge_transfer.train.runs import Run

    _, keras = load()
    run = Run.open(bad_run)
    model = run.load_model()
    x, _ = run.split_arrays("val")
    conv1 = keras.Model(model.input, model.get_layer("conv1").output).predict(x, verbose=0)
    assert np.all(conv1[..., -1] == 0)


def test_search_and_diagnosis_read_bounded_samples(bad_run: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """On large data neither --keep-float auto nor the diagnosis loads the validation split
    whole: each reads a fixed stratified sample of at most N images, a batch at a time, and
    the search still finds the trap on it."""
    from edge_transfer.export import diagnose
    from edge_transfer.export import keep_float as mixed
    from edge_transfer.export.variant import CheckData
    from edge_transfer.train.runs import Run

    def whole_split(*_: object) -> None:
        raise AssertionError("a whole split was loaded into memory")

    monkeypatch.setattr(Run, "split_arrays", whole_split)
    monkeypatch.setattr(mixed, "SEARCH_SAMPLES", 60)
    monkeypatch.setattr(diagnose, "ACCURACY_SAMPLES", 50)
    sizes: list[int] = []
    real = CheckData.predict

    def counting(self, function):  # type: ignore[no-untyped-def]
        sizes.append(len(self))
        return real(self, function)

    monkeypatch.setattr(CheckData, "predict", counting)
    result = export_run(bad_run, ExportConfig(formats=("tflite",), precisions=("int8",),
                                              keep_float=("auto",), diagnose=True,
                                              out=tmp_path))
    test = len(Run.open(bad_run).splits.test)
    assert result.get("tflite-int8-mixed").spec.keep_float == (TRAP,)
    assert set(sizes) == {test, 60, 50}        # the export check keeps the whole test split
    diagnosis = load_diagnoses(tmp_path)[0]
    assert diagnosis.samples == DiagnoseConfig().samples and diagnosis.layers[0].layer == TRAP


def test_a_layer_named_like_an_op_type_keeps_only_that_layer(tmp_path: Path) -> None:
    """MobileNetV3's first convolution is the Keras layer ``Conv``, also an ONNX op type:
    --keep-float auto chose that one layer, and the file kept every convolution in float
    (2.77x int8 while its search record said 1.01x). The written file is now the model the
    search measured: within the byte cap, and its bytes are the record's."""
    run = write_bad_layer_run(tmp_path / "run", trap_name="Conv")
    result = export_run(run, ExportConfig(formats=("onnx",), precisions=("int8",),
                                          keep_float=("auto",), out=tmp_path / "export"))
    int8, mixed = result.get("onnx-int8"), result.get("onnx-int8-mixed")
    assert mixed.ok, mixed.reason
    assert mixed.spec.keep_float == ("Conv",)
    search = mixed.keep_float_search
    assert search is not None and int8.bytes is not None and mixed.bytes is not None
    assert search.file_bytes == mixed.bytes
    assert mixed.bytes < search.max_bytes_ratio * int8.bytes
    # the search sized the model before the export wrote its metadata (our entry, model_info)
    # and put the pixel adapter in front (the plain int8 file has it too) and the float layer's
    # shield (its per-channel DequantizeLinear): the bytes the float layer costs over int8 in
    # the file are the ones it cost in the search
    def model_bytes(artifact: Any) -> int:
        return (int(artifact.bytes) - _onnx_metadata_bytes(artifact.path)
                - _shield_bytes(artifact.path))

    extra = model_bytes(mixed) - model_bytes(int8)
    assert abs(extra - (search.bytes_ratio - 1) * search.int8_bytes) < 0.02 * int8.bytes


def _shield_bytes(path: Path) -> int:
    """Bytes of the per-channel DequantizeLinear nodes (and their scales and zero points) that
    shield an int8-mixed .onnx's float layers from WeightBiasQuantization."""
    import onnx

    graph = onnx.load(str(path)).graph
    nodes = [n for n in graph.node if n.name.endswith("_input_per_channel_DequantizeLinear")]
    names = {name for n in nodes for name in n.input[1:]}
    return sum(n.ByteSize() for n in nodes) + sum(t.ByteSize() for t in graph.initializer
                                                   if t.name in names)


def _onnx_metadata_bytes(path: Path) -> int:
    """Bytes of an ONNX file's ``metadata_props`` and ``doc_string``."""
    import onnx

    model = onnx.load(str(path))
    return len(model.doc_string.encode()) + sum(
        len(p.key.encode()) + len(p.value.encode()) for p in model.metadata_props)


def _weight_bytes(path: Path) -> int:
    """Bytes of a model file's constant tensors (metadata and graph structure excluded)."""
    if path.suffix == ".tflite":
        return weight_bytes(path)
    import onnx
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)

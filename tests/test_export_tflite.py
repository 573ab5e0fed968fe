"""TFLite export of the digits run: every precision, QAT, pruning, checked and self-describing."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _export_shared import (
    export_all,
    export_holding,
    export_integer_io,
    export_post_training,
    exported_and_rerun,
    paired,
    variant_params,
    weight_bytes,
)

import exporters
from edge_transfer.core.samples import decode
from edge_transfer.export.pipeline import ExportResult
from edge_transfer.runtime.metadata import read_metadata
from edge_transfer.train.runs import Run

# The precisions the tests below export; a precision added to the exporter without a test
# fails test_every_precision_is_tested.
TESTED_PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
VARIANTS = [*TESTED_PRECISIONS, "int8-qat", "fp32-pruned50", "int8-pruned50"]


@pytest.fixture(scope="module")
def result(digits_run: Path) -> ExportResult:
    """Every post-training precision (fast)."""
    return export_post_training(digits_run)


@pytest.fixture(scope="module")
def full(digits_run: Path) -> ExportResult:
    """The whole export, QAT and pruning included (slow tests only)."""
    return export_all(digits_run)


def test_every_precision_is_tested() -> None:
    assert set(exporters.get("tflite").PRECISIONS) <= set(TESTED_PRECISIONS)


@pytest.mark.parametrize("variant", variant_params(VARIANTS))
def test_variant_exports_loads_and_passes_its_check(digits_run: Path, variant: str) -> None:
    # Loads in LiteRT, and what it computes is what the record says.
    result, artifact, probabilities, y = exported_and_rerun(digits_run, "tflite", variant)
    assert artifact.check is not None and artifact.check.samples == len(y)
    assert probabilities.shape == (len(y), len(result.labels))
    # The record keeps each sample's top-1 and the paired comparison with the float model.
    assert decode(artifact.check.predictions).tolist() == probabilities.argmax(1).tolist()
    cmp = artifact.check.vs_float
    assert cmp.n == len(y) and cmp.low <= cmp.difference <= cmp.high
    assert not (cmp.difference < -0.05 and cmp.p_value < 0.05)


@pytest.mark.parametrize("variant", variant_params(["fp32", "fp32-pruned50"]))
def test_fp32_matches_keras_within_1e4(digits_run: Path, variant: str) -> None:
    check = export_holding(digits_run, variant).get(f"tflite-{variant}").check
    # The small CNN matches far inside the tolerance (1e-4 + 1e-3 x its largest probability).
    assert check is not None and check.max_abs_diff <= 1e-4
    assert check.tolerance is not None and 1e-4 < check.tolerance <= 1.1e-3
    assert check.top1_agreement == 1.0


def test_int8_not_significantly_below_float(result: ExportResult) -> None:
    """Paired on the same test samples: int8 loses no more than 2 points with significance."""
    cmp = result.get("tflite-int8").check.vs_float
    assert cmp.difference >= -0.02 or cmp.p_value >= 0.05, cmp.describe()


@pytest.mark.slow
def test_qat_int8_not_significantly_worse_than_ptq_int8(full: ExportResult) -> None:
    cmp = paired(full, "tflite-int8", "tflite-int8-qat")
    assert cmp.difference >= 0 or cmp.p_value >= 0.05, cmp.describe()


def test_quantized_files_are_smaller(result: ExportResult) -> None:
    """int8 <= 0.30x and fp16 <= 0.55x of fp32, on whole files and on the weights alone."""
    fp32 = result.get("tflite-fp32").bytes
    assert result.get("tflite-int8").bytes <= 0.30 * fp32
    assert result.get("tflite-fp16").bytes <= 0.55 * fp32
    weights = {name: weight_bytes(result.get(f"tflite-{name}").path)
               for name in ("fp32", "fp16", "int8")}
    assert weights["int8"] <= 0.30 * weights["fp32"]
    assert weights["fp16"] <= 0.55 * weights["fp32"]


@pytest.mark.slow
def test_pruning_reaches_sparsity_and_pays_off_gzipped(full: ExportResult) -> None:
    pruned, dense = full.get("tflite-fp32-pruned50"), full.get("tflite-fp32")
    assert pruned.spec.sparsity == 0.5
    assert pruned.gzip_bytes < 0.75 * dense.gzip_bytes
    assert pruned.bytes == pytest.approx(dense.bytes, rel=0.02)  # same size uncompressed


@pytest.mark.parametrize("variant", variant_params(VARIANTS))
def test_labels_and_preprocessing_read_back_from_the_file(digits_run: Path,
                                                          variant: str) -> None:
    meta = read_metadata(export_holding(digits_run, variant).get(f"tflite-{variant}").path)
    run = Run.open(digits_run)
    assert meta.labels == run.labels == ("5", "6", "7", "8", "9")
    # RGB pixels 0..255 in, the run's normalization (and gray conversion) inside the graph
    assert meta.preprocessing == run.preprocessing.pixels_in()
    assert meta.in_graph == run.preprocessing


def test_export_json_records_every_variant(result: ExportResult) -> None:
    data = json.loads(result.path.read_text())
    assert data["schema_version"] == 1 and data["labels"] == list(result.labels)
    records = {a["name"]: a for a in data["artifacts"]}
    record = records["tflite-int8"]
    assert record["file"] == "model-int8.tflite" and record["status"] == "ok"
    assert (result.out_dir / record["file"]).stat().st_size == record["bytes"]
    assert record["inputs"][0]["shape"] == [-1, 8, 8, 3]   # RGB pixels, gray inside
    assert set(record["check"]) == {"samples", "max_abs_diff", "top1_agreement", "accuracy",
                                     "tolerance", "passed", "predictions", "vs_float",
                                     "underpowered"}
    # The samples every check ran on: the run's test split, with the float model's top-1.
    assert data["samples"]["split"] == "test" and data["samples"]["count"] == len(
        Run.open(result.run).split_arrays("test")[1])
    assert len(decode(data["float_predictions"])) == data["samples"]["count"]
    assert data["decision"] == {"max_accuracy_drop": 0.05, "alpha": 0.05,
                                "decide": "significant"}
    assert records["tflite-int8"]["qat"] is False and records["tflite-int8"]["sparsity"] is None


@pytest.mark.slow
def test_export_json_records_qat_and_pruning(full: ExportResult) -> None:
    records = {a["name"]: a for a in json.loads(full.path.read_text())["artifacts"]}
    assert records["tflite-int8-qat"]["qat"] is True
    assert records["tflite-int8-pruned50"]["sparsity"] == 0.5


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_integer_io(digits_run: Path, io: str) -> None:
    artifact = export_integer_io(digits_run, io).get("tflite-int8")
    assert artifact.ok, artifact.reason
    for tensor in (*artifact.inputs, *artifact.outputs):
        assert tensor.dtype == io and tensor.scale is not None and tensor.zero_point is not None
    cmp = artifact.check.vs_float   # paired on the same samples (not a bare 0.02 on 134)
    assert cmp.difference >= -0.02 or cmp.p_value >= 0.05, cmp.describe()


def test_converter_failure_names_the_op(tmp_path: Path) -> None:
    """An op TFLite's builtins lack (FFT2D) fails conversion with the op's name."""
    from edge_transfer.core.errors import ConversionError
    from edge_transfer.core.keras import load
    from edge_transfer.core.preprocessing import Preprocessing
    from edge_transfer.runtime.metadata import ModelMetadata
    from exporters import Calibration, ExportSpec, KerasSource

    tf, keras = load()
    inputs = keras.layers.Input((8, 8, 1))
    spectrum = keras.layers.Lambda(
        lambda t: tf.math.abs(tf.signal.fft2d(tf.cast(t[..., 0], tf.complex64))))(inputs)
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.Flatten()(spectrum))
    source = KerasSource(keras.Model(inputs, outputs), tmp_path)
    calibration = Calibration(np.zeros((2, 8, 8, 1), np.float32), source.input_name)
    meta = ModelMetadata(labels=tuple("abcde"), preprocessing=Preprocessing(8, 8))
    with pytest.raises(ConversionError, match=r"tflite-fp32 needs TensorFlow ops .*\(FFT2D\)"):
        exporters.get("tflite").export(source, ExportSpec.fp32(), calibration, tmp_path,
                                       metadata=meta)
    assert not list(tmp_path.glob("*.tflite"))


def test_tflite_files_are_the_bytes_of_tensorflows_own_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter saves a source's SavedModel without Keras's per-layer functions and loads
    it once for all its files (TensorFlow's converter alone loads it twice per file); each
    precision's file is the same bytes as the Keras model saved and converted TensorFlow's
    own way."""
    from tensorflow.lite.python import lite

    from edge_transfer.core.keras import load
    from exporters import Calibration, ExportSpec, KerasSource, tflite, tflite_debug

    tf, keras = load()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(keras.layers.DepthwiseConv2D(3, padding="same")(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(x)))
    source, keras_way = KerasSource(model, tmp_path), KerasSource(model, tmp_path)

    @tf.function(input_signature=source.input_signature())
    def serve(x: Any) -> dict[str, Any]:
        return {"probabilities": model(x, training=False)}

    tf.saved_model.save(model, str(tmp_path / "keras-way"), signatures=serve)
    keras_way.__dict__["saved_model"] = tmp_path / "keras-way"
    calibration = Calibration(np.random.default_rng(0).random((16, 8, 8, 3), np.float32),
                              source.input_name)
    specs = [ExportSpec.fp32(), ExportSpec.fp16(), ExportSpec.dynamic(), ExportSpec.int8(),
             ExportSpec.int8(io="uint8"), ExportSpec.int16x8()]
    real = getattr(lite._load, "_edge_transfer_real", lite._load)
    loads: list[str] = []

    def convert_all(source: KerasSource) -> list[bytes]:
        loads.clear()
        monkeypatch.setattr(tflite_debug, "_LOADED", weakref.WeakValueDictionary())
        monkeypatch.setattr(lite, "_load", lambda path, tags=None: (
            loads.append(str(path)), real(path, tags))[1])
        return [tflite._convert(source, spec, calibration) for spec in specs]

    with monkeypatch.context() as own_way:
        own_way.setattr(tflite_debug, "_load_once", lambda *args: None)
        expected = convert_all(keras_way)
    assert len(loads) == 2 * len(specs)          # TensorFlow's own way: twice per file
    assert convert_all(source) == expected
    assert loads == [str(source.saved_model)]    # once in all
    graph = (source.saved_model / "saved_model.pb").stat().st_size   # no per-layer functions
    assert graph < (keras_way.saved_model / "saved_model.pb").stat().st_size / 2
    assert len(tflite_debug._LOADED) == 1
    del source, keras_way                        # the load lives as long as its source
    gc.collect()
    assert len(tflite_debug._LOADED) == 0


def test_a_model_holding_a_resource_outside_its_variables_is_saved_the_keras_way(
        tmp_path: Path) -> None:
    """A layer that keeps a lookup table (a resource, not a variable): the SavedModel of the
    signature and variables alone cannot hold it, so the source saves the Keras model, and
    the SavedModel computes what the model computes."""
    from edge_transfer.core.keras import load
    from exporters import KerasSource

    tf, keras = load()

    class Lookup(keras.layers.Layer):   # multiplies by a factor kept in a hash table
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer([0], [3.0]), default_value=1.0)

        def call(self, x: Any) -> Any:
            return x * self.table.lookup(tf.constant(0))

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(Lookup()(inputs)))
    source = KerasSource(model, tmp_path)
    x = np.random.default_rng(0).random((3, 4), np.float32)
    served = tf.saved_model.load(str(source.saved_model)).signatures["serving_default"]
    np.testing.assert_allclose(served(x=tf.constant(x))["probabilities"].numpy(),
                               model.predict(x, verbose=0), atol=1e-6)

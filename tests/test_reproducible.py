"""Reproducibility on the CPU: the same seed gives the same metrics.json and the same
artifact bytes; run.json and export.json record every version and the data fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST

from edge_transfer.data.load import load_dataset
from edge_transfer.export.config import ExportConfig
from edge_transfer.export.pipeline import export_run
from edge_transfer.train.runs import VERSIONED_PACKAGES, Run
from edge_transfer.train.transfer import FinetuneConfig, finetune

EXPORT = ExportConfig(formats=("tflite", "onnx"), precisions=("fp32", "int8"),
                      calibration_samples=32)


@pytest.fixture(scope="module")
def twin_runs(pretrain_run: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two short fine-tunes with the same seed (3 + 2 epochs on digits:5-9, 10 shots), in
    folders of the same name (a file's standard metadata names the model after its run)."""
    root = tmp_path_factory.mktemp("twins")
    return [finetune(FinetuneConfig(data="digits:5-9", out=root / name / "run",
                                    backbone=str(pretrain_run), shots=10, epochs=3,
                                    finetune_epochs=2, seed=3, **FAST))
            for name in ("a", "b")]


def test_same_seed_same_weights_and_metrics(twin_runs: list[Path]) -> None:
    """Reproducible on a CPU: the same fine-tune twice gives the same weights and the same
    metrics.json, byte for byte."""
    from edge_transfer.train.models import load_keras_model

    first, second = (load_keras_model(run / "model.keras").get_weights() for run in twin_runs)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len({(run / "metrics.json").read_bytes() for run in twin_runs}) == 1


@pytest.mark.slow  # two whole exports
def test_same_seed_same_artifact_bytes(twin_runs: list[Path]) -> None:
    exports = [export_run(run, EXPORT) for run in twin_runs]
    digests = [{a.name: a.sha256 for a in e.artifacts if a.ok} for e in exports]
    assert sorted(digests[0]) == ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]
    assert digests[0] == digests[1]
    for a, b in zip(*(e.artifacts for e in exports), strict=True):
        assert a.path.read_bytes() == b.path.read_bytes(), a.name


def test_run_and_export_records_name_versions_and_data(digits_run: Path) -> None:
    record = json.loads((digits_run / "run.json").read_text())
    for package in ("python", "machine", *VERSIONED_PACKAGES):
        assert record["versions"].get(package), package
    data = record["data"]
    assert data["fingerprint"] == load_dataset(data["spec"]).fingerprint()
    assert Run.open(digits_run).data_fingerprint == data["fingerprint"]
    for key in ("spec", "seed", "val_fraction", "test_fraction", "shots"):
        assert key in data


def test_onnx_names_do_not_depend_on_the_converting_process() -> None:
    """tf2onnx merges equal constants under whichever name its hash order puts first, orders
    initializers so too, and numbers the names it makes from a process-wide counter: the same
    model converted in two processes (a worker and the export's own) gave different bytes.
    canonical_names gives both the same."""
    from onnx import TensorProto, helper, numpy_helper

    from exporters.onnx_graph import canonical_names

    def converted(kept: str, scale: str, shift: str, first: str) -> bytes:
        values = {kept: np.zeros(2, np.float32), scale: np.ones(2, np.float32),
                  shift: np.full(2, 2.0, np.float32)}
        nodes = [helper.make_node("Add", ["x", kept], ["y"], name="a"),
                 helper.make_node("Add", ["y", kept], ["z"], name="b"),
                 helper.make_node("Mul", ["z", scale], ["w"], name="c"),
                 helper.make_node("Add", ["w", shift], ["out"], name="d")]
        order = sorted(values, key=lambda name: name != first)      # ``first`` stored first
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
            [numpy_helper.from_array(values[name], name) for name in order])
        canonical_names(graph)
        return helper.make_model(graph).SerializeToString()

    # The merged constant under either name; the counter's numbers in either order; the
    # initializers stored in another order.
    one = converted("a/bias", "scale__7", "shift__9", first="a/bias")
    other = converted("b/bias", "scale__12", "shift__4", first="shift__4")
    assert one == other

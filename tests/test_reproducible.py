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


@pytest.mark.slow  # two fine-tunes and two whole exports
def test_same_seed_same_metrics_and_same_artifact_bytes(
    pretrain_run: Path, tmp_path: Path
) -> None:
    runs, exports = [], []
    for name in ("a", "b"):
        # the same folder name: a file's standard metadata names the model after its run
        run = finetune(FinetuneConfig(data="digits:5-9", out=tmp_path / name / "run",
                                      backbone=str(pretrain_run), shots=10, epochs=3,
                                      finetune_epochs=2, seed=3, **FAST))
        runs.append(run)
        exports.append(export_run(run, EXPORT))
    assert (runs[0] / "metrics.json").read_bytes() == (runs[1] / "metrics.json").read_bytes()
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
    """tf2onnx merges equal constants under whichever name its hash order puts first, and
    orders initializers so too: the same model converted in two processes (a worker and the
    export's own) gave different bytes. canonical_names gives both the same."""
    from onnx import TensorProto, helper, numpy_helper

    from exporters.onnx_graph import canonical_names

    def converted(kept: str, order: list[str]) -> bytes:
        zeros = {name: numpy_helper.from_array(np.zeros(2, np.float32), name)
                 for name in ("a/bias", "b/bias", "scale__7")}
        zeros["scale__7"] = numpy_helper.from_array(np.ones(2, np.float32), "scale__7")
        nodes = [helper.make_node("Add", ["x", kept], ["y"], name="a"),
                 helper.make_node("Add", ["y", kept], ["z"], name="b"),
                 helper.make_node("Mul", ["z", "scale__7"], ["out"], name="c")]
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])],
            [zeros[name] for name in order if name != ({"a/bias", "b/bias"} - {kept}).pop()])
        canonical_names(graph)
        return helper.make_model(graph).SerializeToString()

    one = converted("a/bias", ["a/bias", "scale__7"])
    other = converted("b/bias", ["scale__7", "b/bias"])
    assert one == other

"""The run's own files as typed records: RUN/run.json (RunInfo) and RUN/metrics.json
(RunMetrics). Same keys as before the records, old files (no schema_version, fewer keys)
still load, bad files are one error naming the fix. Fast: no TensorFlow, no training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_transfer.core.errors import ModelError
from edge_transfer.core.records import (
    ExportRecord,
    MalformedRecord,
    RunBackbone,
    RunData,
    RunInfo,
    RunMetrics,
    RunStrategy,
    SplitSizes,
)
from edge_transfer.core.samples import encode
from edge_transfer.train.runs import Run

FINGERPRINT = "1025a9517fa0a376"

# run.json and metrics.json as the release before the records wrote them (no
# schema_version; the first release had no strategy name, no seconds, no val/test data, and
# kept the wall seconds in metrics.json).
OLD_RUN = {"command": "finetune", "args": {"backbone": "runs/src", "shots": 10}, "seed": 0,
           "data": {"spec": "digits:5-9", "seed": 0, "val_fraction": 0.15,
                    "test_fraction": 0.25, "shots": 10, "fingerprint": FINGERPRINT,
                    "skip_bad_files": False,
                    "sizes": {"train": 50, "val": 135, "test": 225}},
           "backbone": {"name": "runs/src", "source": "runs/src", "weights": "pretrained",
                        "input_shape": [8, 8, 1]},
           "strategy": {"class": "_DefaultDistributionStrategy", "replicas": 1},
           "precision": "float32", "versions": {"tensorflow": "2.21.0"}}
OLD_METRICS = {"test_accuracy": 0.9427, "val_accuracy": 0.9776, "train_accuracy": 1.0,
               "scratch_test_accuracy": 0.7181, "scratch_val_accuracy": 0.75,
               "source_accuracy_before": 0.9866, "source_accuracy_after": 0.692,
               "source_head": "pretrain", "l2sp_penalty": 0.0, "seconds": 61.2}


def _new_info() -> RunInfo:
    return RunInfo(
        command="finetune", seconds=12.5,
        seconds_by_phase={"data": 0.2, "training": 10.0, "evaluation": 2.0},
        args={"data": "digits:5-9", "shots": 10, "cache": None}, seed=0,
        data=RunData(spec="digits:5-9", seed=0, val_fraction=0.15, test_fraction=0.25,
                     shots=10, fingerprint=FINGERPRINT,
                     sizes=SplitSizes(train=50, val=135, test=225)),
        backbone=RunBackbone(name="small-cnn", source="small-cnn", weights="none",
                             input_shape=(8, 8, 1)),
        strategy=RunStrategy(name="auto", class_name="_DefaultDistributionStrategy",
                             replicas=1),
        precision="float32", versions={"tensorflow": "2.21.0"}, warnings=("a warning",))


def _write(folder: Path, name: str, data: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(data if isinstance(data, str) else json.dumps(data))
    return folder / name


def _old_run_dir(folder: Path, metrics: dict[str, Any] | None = None) -> Path:
    """A run folder of the release before the records (the model file is not read here)."""
    _write(folder, "run.json", OLD_RUN)
    _write(folder, "metrics.json", OLD_METRICS if metrics is None else metrics)
    _write(folder, "labels.txt", "5\n6\n7\n8\n9\n")
    _write(folder, "preprocessing.json", {"height": 8, "width": 8, "channels": 1})
    _write(folder, "model.keras", "not read by these tests")
    return folder


def test_run_json_keeps_its_keys(tmp_path: Path) -> None:
    """What finetune writes: the keys of the release before the records, plus schema_version."""
    text = _new_info().dump(tmp_path / "run.json").read_text()
    data = json.loads(text)
    assert set(data) == {"schema_version", "command", "seconds", "seconds_by_phase", "args",
                         "seed", "data", "backbone", "strategy", "precision", "versions",
                         "warnings"}
    assert set(data["data"]) == {"spec", "seed", "val_fraction", "test_fraction", "shots",
                                 "val_data", "test_data", "fingerprint", "skip_bad_files",
                                 "sizes"}
    assert data["strategy"] == {"name": "auto", "class": "_DefaultDistributionStrategy",
                                "replicas": 1}
    assert data["backbone"]["input_shape"] == [8, 8, 1] and data["args"]["cache"] is None
    assert data["data"]["val_data"] is None and data["seconds"] == 12.5
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert RunInfo.load(tmp_path) == _new_info()


def test_metrics_json_writes_only_what_was_measured(tmp_path: Path) -> None:
    """A pretrain (no scratch baseline, no source figures, no L2-SP) writes no null keys."""
    predictions = encode([0, 1, 1, 2])
    metrics = RunMetrics(train_accuracy=1.0, val_accuracy=0.75, val_samples=4,
                         test_accuracy=0.75, test_samples=4, test_predictions=predictions)
    data = json.loads(metrics.dump(tmp_path / "metrics.json").read_text())
    assert data == {"schema_version": 1, "train_accuracy": 1.0, "val_accuracy": 0.75,
                    "val_samples": 4, "test_accuracy": 0.75, "test_samples": 4,
                    "test_predictions": predictions}
    assert RunMetrics.load(tmp_path) == metrics and not metrics.transfer_measured


def test_old_run_folder_loads(tmp_path: Path) -> None:
    run = Run.open(_old_run_dir(tmp_path / "old"))
    info, metrics = run.info, run.metrics
    assert run.data_fingerprint == FINGERPRINT and info.data.shots == 10
    assert info.data.val_data is None and info.data.test_data is None
    assert info.seconds is None and info.seconds_by_phase is None and info.warnings == ()
    assert info.strategy == RunStrategy(class_name="_DefaultDistributionStrategy", replicas=1)
    assert info.data.sizes == SplitSizes(train=50, val=135, test=225)
    assert metrics.test_accuracy == pytest.approx(0.9427) and metrics.test_samples is None
    assert metrics.source_head == "pretrain" and metrics.transfer_measured
    # The smallest run.json a test fixture or a benchmark writes, and a metrics.json with
    # one figure: both load, every missing figure is None.
    minimal = {"command": "test", "data": {k: OLD_RUN["data"][k] for k in (
        "spec", "seed", "val_fraction", "test_fraction", "shots", "fingerprint")}}
    _write(tmp_path / "min", "run.json", minimal)
    _write(tmp_path / "min", "metrics.json", {"val_accuracy": 0.5})
    assert RunInfo.load(tmp_path / "min").data.sizes is None
    assert RunMetrics.load(tmp_path / "min") == RunMetrics(val_accuracy=0.5)


def test_a_run_without_metrics_has_no_figures(tmp_path: Path) -> None:
    folder = _old_run_dir(tmp_path / "run")
    (folder / "metrics.json").unlink()
    assert Run.open(folder).metrics == RunMetrics()


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("run.json", "{not json", ("cannot read", "train the run again")),
    ("run.json", {"command": "finetune"}, ("data is missing", "train the run again")),
    ("run.json", {**OLD_RUN, "data": {**OLD_RUN["data"], "seed": "zero"}},
     ("data.seed: expected int", "malformed")),
    ("run.json", {**OLD_RUN, "schema_version": 9}, ("schema_version 9", "upgrade")),
    ("metrics.json", {"test_accuracy": "high"}, ("test_accuracy: expected float",)),
    ("metrics.json", [0.9], ("holds no JSON object",)),
])
def test_a_bad_run_file_is_one_error_naming_the_fix(tmp_path: Path, name: str,
                                                    content: Any,
                                                    expected: tuple[str, ...]) -> None:
    folder = _old_run_dir(tmp_path / "run")
    path = _write(folder, name, content)
    record = RunInfo if name == "run.json" else RunMetrics
    with pytest.raises(ModelError) as info:
        record.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for part in expected:
        assert part in message, message


def test_only_the_run_files_may_lack_a_schema_version() -> None:
    """Files that had a schema_version from their first release still must have one."""
    with pytest.raises(MalformedRecord, match="schema_version None"):
        ExportRecord.from_dict({"run": "r", "data_fingerprint": None, "labels": [],
                                "preprocessing": {"height": 8, "width": 8, "channels": 1},
                                "float_accuracy": None, "artifacts": []})


def test_readers_take_an_old_run(tmp_path: Path) -> None:
    """The summary line, the health line and the report's transfer figures read an old run."""
    from edge_transfer.report.build import transfer_figures
    from edge_transfer.train.messages import health_line, summary_line

    old = _old_run_dir(tmp_path / "old")
    line = summary_line(old)
    assert line.startswith("test accuracy 0.943, val 0.978, scratch baseline 0.718, "
                           "source 0.987 -> 0.692 in 0 s"), line
    assert health_line(old) is None                     # no per-sample figures to judge
    figures = transfer_figures(Run.open(old).metrics)
    assert figures is not None
    assert figures.transfer_gain == pytest.approx(0.2246)
    assert figures.forgetting == pytest.approx(0.2946)
    assert figures.test_samples is None and "transfer_gain_p" not in figures.to_dict()
    (old / "metrics.json").write_text(json.dumps({
        "test_accuracy": 0.2, "val_accuracy": 0.2, "test_samples": 100,
        "test_predictions": encode([0, 1, 2, 3, 4] * 20)}))
    assert (health_line(old) or "").startswith("the model is at chance")


def test_an_old_reports_transfer_figures_load() -> None:
    """report.json's ``transfer`` as written before its record (test_samples a float)."""
    from edge_transfer.core.records import TransferFigures

    old = {"test_accuracy": 0.9427, "val_accuracy": 0.9776, "scratch_test_accuracy": 0.7181,
           "source_accuracy_before": None, "source_accuracy_after": None,
           "transfer_gain": 0.2246, "forgetting": None, "test_samples": 359.0,
           "transfer_gain_low": 0.17, "transfer_gain_high": 0.28, "transfer_gain_p": 1e-9}
    figures = TransferFigures.from_dict(old)
    assert figures.test_samples == 359 and figures.transfer_gain_p == 1e-9
    assert figures.to_dict() == old


def test_opening_a_run_checks_its_run_json(tmp_path: Path) -> None:
    """export / diagnose / bundle open the run first: a bad run.json stops them there."""
    folder = _old_run_dir(tmp_path / "run")
    _write(folder, "run.json", {**OLD_RUN, "data": {"spec": "digits:5-9"}})
    with pytest.raises(ModelError, match=r"data\.seed is missing.*train the run again"):
        Run.open(folder)

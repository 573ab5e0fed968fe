"""Variants converted side by side in worker processes (`--jobs N`) give what one after another
gives, and a worker that dies fails only its own variant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _crashing_worker import CRASHES_ON, crash_on_tflite_int8
from _export_shared import POST_TRAINING, export_post_training

from edge_transfer.export.config import ExportConfig
from edge_transfer.export.pipeline import ExportResult, export_run

# Each test starts worker processes that import TensorFlow: about a minute each on 2 loaded
# cores (the sequential export they compare with is the fast tests' shared one).
pytestmark = pytest.mark.slow

# What may differ between two exports of the same run: where the time went, and where.
TIMINGS = {"seconds", "check_seconds", "timing"}


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _record(result: ExportResult) -> dict[str, Any]:
    return json.loads(result.path.read_text())


def test_parallel_export_equals_sequential(digits_run: Path, tmp_path: Path) -> None:
    """Every post-training variant in 2 workers: the same files (sha256), the same checks and
    per-sample predictions, in the same order; export.json differs only in its timings."""
    sequential = export_post_training(digits_run)         # the small CNN: in this process
    assert sequential.timing is not None and sequential.timing.jobs == 1
    parallel = export_run(digits_run, ExportConfig(**{**POST_TRAINING.__dict__, "jobs": 2,
                                                      "out": tmp_path / "export"}))
    assert parallel.timing is not None and parallel.timing.jobs == 2
    assert [a.name for a in parallel.artifacts] == [a.name for a in sequential.artifacts]
    for p, s in zip(parallel.artifacts, sequential.artifacts, strict=True):
        assert (p.status, p.reason, p.sha256, p.bytes) == (s.status, s.reason, s.sha256,
                                                           s.bytes), p.name
        assert p.check == s.check, p.name
        if p.ok:
            assert p.seconds is not None and p.check_seconds is not None, p.name
    a, b = _record(parallel), _record(sequential)
    assert a["run"] == b["run"]
    assert _without_timings(a) == _without_timings(b)
    timing = a["timing"]
    assert timing["jobs"] == 2 and timing["wall_seconds"] > 0
    assert timing["convert_seconds"] == pytest.approx(
        sum(x["seconds"] or 0 for x in a["artifacts"]), abs=0.01)
    hidden = [p.name for p in (tmp_path / "export").iterdir() if p.name.startswith(".")]
    assert hidden == []


def test_a_dead_worker_fails_only_its_variant(digits_run: Path, tmp_path: Path) -> None:
    """A worker killed (SIGKILL) on tflite-int8 breaks the pool; the variants in flight run
    again alone: only tflite-int8 fails, saying its worker died and how, the others are ok and
    the same as without the crash."""
    config = ExportConfig(formats=("tflite", "onnx"), precisions=("fp32", "int8"),
                          calibration_samples=64, jobs=2, out=tmp_path / "export")
    result = export_run(digits_run, config, worker=crash_on_tflite_int8)
    assert [a.name for a in result.artifacts] == ["tflite-fp32", "tflite-int8", "onnx-fp32",
                                                  "onnx-int8"]
    failed = [a for a in result.artifacts if not a.ok]
    assert [a.name for a in failed] == [CRASHES_ON]
    assert "worker process died" in (failed[0].reason or "")
    assert "killed by SIGKILL" in (failed[0].reason or "")
    assert not (tmp_path / "export" / "model-int8.tflite").exists()
    sequential = export_post_training(digits_run)
    for artifact in result.artifacts:
        if artifact.ok:
            same = sequential.get(artifact.name)
            assert (artifact.sha256, artifact.check) == (same.sha256, same.check), artifact.name
    assert _record(result)["artifacts"][1]["status"] == "failed"

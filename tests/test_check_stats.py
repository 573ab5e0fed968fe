"""The regression gate decides on paired statistics: what the data can resolve, and no more."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_main
from report_inputs import edited, write_inputs

from edge_transfer.core.records import SampleIds
from edge_transfer.core.samples import encode
from edge_transfer.report.build import build_report
from edge_transfer.report.gate import Tolerances, check, junit_xml, load_report, markdown_summary


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("check_stats")
    run, validation = write_inputs(root)
    return load_report(build_report(run, root / "report", validation_json=validation))


def _failed(result: Any) -> list[tuple[str, str]]:
    return [(f.artifact, f.criterion) for f in result.regressions]


def _row(report: dict, name: str) -> dict:
    return next(r for r in report["artifacts"] if r["name"] == name)


def test_one_image_on_134_does_not_fail(report: dict) -> None:
    int8 = _row(report, "tflite-int8")
    one_less = edited(report, "tflite-int8",
                      workstation_accuracy=int8["workstation_accuracy"] - 1 / 134)
    assert check(one_less, report).ok
    # Two images (1.5 pt) are beyond the 1-point tolerance on the point estimate, but
    # 2 lost and 0 gained is p = 0.5: no evidence. The point rule still fails it.
    two_less = edited(report, "tflite-int8",
                      workstation_accuracy=int8["workstation_accuracy"] - 2 / 134)
    result = check(two_less, report)
    assert result.ok
    finding = next(f for f in result.findings
                   if (f.artifact, f.criterion) == ("tflite-int8", "accuracy"))
    assert finding.p_value == pytest.approx(0.5)
    assert finding.interval is not None and finding.interval[0] < 0 < finding.interval[1]
    assert "cannot resolve a 1.0-pt drop" in (finding.note or "")
    point = check(two_less, report, Tolerances(decide="point"))
    assert _failed(point) == [("tflite-int8", "accuracy")]


def _big_report(correct: np.ndarray, predictions: np.ndarray, labels: np.ndarray) -> dict:
    ids = SampleIds.of("bigdata", "test", labels)
    accuracy = float(np.mean(correct))
    return {"schema_version": 1, "data_fingerprint": "bigdata", "labels": list("abcde"),
            "samples": ids.to_dict(), "float_predictions": None,
            "artifacts": [{"name": "tflite-int8", "status": "ok", "format": "tflite",
                           "precision": "int8", "bytes": 1000,
                           "workstation_accuracy": accuracy,
                           "predictions": encode(predictions)}]}


def test_three_points_on_5000_samples_fail() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 5000)
    before = labels.copy()
    wrong = rng.choice(5000, 250, replace=False)
    before[wrong] = (labels[wrong] + 1) % 5                  # 95.0 %
    after = before.copy()
    right = np.flatnonzero(before == labels)
    after[right[:150]] = (labels[right[:150]] + 2) % 5       # -3 pt: 150 lost, none gained
    base = _big_report(before == labels, before, labels)
    now = _big_report(after == labels, after, labels)
    result = check(now, base)
    assert _failed(result) == [("tflite-int8", "accuracy")]
    finding = result.regressions[0]
    assert finding.change == pytest.approx(-0.03)
    assert finding.p_value is not None and finding.p_value < 1e-10
    assert finding.interval is not None and finding.interval[1] < -0.02
    assert "p=<0.001" in finding.message and "[-" in finding.message
    # JUnit and the CI summary carry the interval and the p-value.
    failure = ET.fromstring(junit_xml(result).split("\n", 1)[1]).find(".//failure")
    assert failure is not None and "p=<0.001" in failure.get("message", "")
    assert "p=<0.001" in markdown_summary(result, Tolerances())


def test_a_model_that_fell_to_chance_fails_check(report: dict) -> None:
    collapsed = edited(report, "onnx-int8", predictions=encode([0] * 134),
                       workstation_accuracy=27 / 134)
    result = check(collapsed, report)
    assert ("onnx-int8", "chance") in _failed(result)
    message = next(f.message for f in result.regressions if f.criterion == "chance")
    assert "one class" in message or "chance" in message
    # ...but not when the baseline was at chance already.
    assert ("onnx-int8", "chance") not in _failed(check(collapsed, collapsed))


def test_report_without_predictions_falls_back_to_point_estimates(report: dict) -> None:
    bare = json.loads(json.dumps(report))
    for row in bare["artifacts"]:
        row["predictions"] = row["device_predictions"] = None
    worse = edited(bare, "tflite-int8",
                   workstation_accuracy=_row(bare, "tflite-int8")["workstation_accuracy"] - 0.02)
    result = check(worse, bare)
    assert _failed(result) == [("tflite-int8", "accuracy")]
    assert "point estimates" in result.regressions[0].message


def test_cli_alpha_and_decide(report: dict, tmp_path: Path) -> None:
    int8 = _row(report, "tflite-int8")
    two_less = edited(report, "tflite-int8",
                      workstation_accuracy=int8["workstation_accuracy"] - 2 / 134)
    now, base = tmp_path / "now.json", tmp_path / "base.json"
    now.write_text(json.dumps(two_less))
    base.write_text(json.dumps(report))
    summary = tmp_path / "summary.md"
    proc = run_main("check", str(now), "--baseline", str(base),
                   env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cannot resolve" in proc.stdout + proc.stderr
    assert "| tflite-int8 | accuracy | -1.5 pt |" in summary.read_text()
    assert "| 0.5 | pass |" in summary.read_text()
    proc = run_main("check", str(now), "--baseline", str(base), "--decide", "point")
    assert proc.returncode == 1
    proc = run_main("check", str(now), "--baseline", str(base), "--alpha", "2")
    assert proc.returncode == 2 and proc.stderr.startswith("error:")

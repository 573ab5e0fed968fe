"""The regression gate on reports built from contract JSON: library, CLI, JUnit, CI summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import run_main
from report_inputs import edited, write_inputs

from edge_transfer.core.errors import DataError, UserError
from edge_transfer.report.build import build_report
from edge_transfer.report.gate import Tolerances, check, junit_xml, load_report


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("check")
    run, validation = write_inputs(root)
    return load_report(build_report(run, root / "report", validation_json=validation))


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def _failed(result) -> list[tuple[str, str]]:
    return [(f.artifact, f.criterion) for f in result.regressions]


def test_report_against_itself_holds(report: dict) -> None:
    result = check(report, report)
    assert result.ok and len(result.artifacts) == 10
    assert {f.verdict for f in result.findings} <= {"pass", "skip"}
    assert sum(f.verdict == "pass" for f in result.findings) >= 9 * 6


def test_accuracy_drop_beyond_tolerance_is_a_regression(report: dict) -> None:
    row = next(r for r in report["artifacts"] if r["name"] == "tflite-int8")
    better = edited(report, "tflite-int8", workstation_accuracy=row["workstation_accuracy"] + 0.02)
    point = Tolerances(decide="point")     # the point estimate alone decides
    result = check(report, better, point)
    assert _failed(result) == [("tflite-int8", "accuracy")]
    assert result.regressions[0].change == pytest.approx(-3 / 134)   # 0.02 is 2.7 images
    within = edited(report, "tflite-int8", workstation_accuracy=row["workstation_accuracy"] + 0.009)
    assert check(report, within, point).ok
    assert not check(report, better, Tolerances(max_accuracy_drop=0.03, decide="point")).regressions
    # By default a drop must also be significant: 3 images lost of 134 (p = 0.25) is not.
    default = check(report, better)
    assert default.ok
    finding = next(f for f in default.findings
                   if (f.artifact, f.criterion) == ("tflite-int8", "accuracy"))
    assert finding.p_value == pytest.approx(0.25) and "not significant" in finding.message


def test_size_growth_beyond_tolerance_is_a_regression(report: dict) -> None:
    row = next(r for r in report["artifacts"] if r["name"] == "onnx-int8")
    smaller = edited(report, "onnx-int8", bytes=int(row["bytes"] / 1.08))
    assert _failed(check(report, smaller)) == [("onnx-int8", "size")]
    assert check(report, edited(report, "onnx-int8", bytes=int(row["bytes"] / 1.04))).ok


def test_device_gap_missing_row_and_new_failure_are_regressions(report: dict) -> None:
    row = next(r for r in report["artifacts"] if r["name"] == "tflite-fp16")
    # 8 images (6 pt) lost on the device, none gained: significant (p = 0.008).
    drifted = edited(report, "tflite-fp16", device_accuracy=row["workstation_accuracy"] - 0.06,
                     device_gap=-0.06)
    assert ("tflite-fp16", "device_gap") in _failed(check(drifted, report))
    gone = {**report, "artifacts": [r for r in report["artifacts"] if r["name"] != "onnx-fp32"]}
    assert _failed(check(gone, report)) == [("onnx-fp32", "present")]
    broke = edited(report, "tflite-fp32", status="failed", reason="converter crashed")
    result = check(broke, report)
    assert _failed(result) == [("tflite-fp32", "status")]
    assert "converter crashed" in result.regressions[0].message
    # a row that was failed in the baseline already is not a new regression
    assert check(report, edited(report, "onnx-int8-qat")).ok


def test_figure_no_longer_measured_is_a_regression(report: dict) -> None:
    unvalidated = edited(report, "onnx-dynamic", device_accuracy=None, device_gap=None)
    assert set(_failed(check(unvalidated, report))) == {("onnx-dynamic", "device_accuracy"),
                                                        ("onnx-dynamic", "device_gap")}


def test_different_data_or_schema_refused(report: dict, tmp_path: Path) -> None:
    other = {**report, "data_fingerprint": "0000aaaa"}
    with pytest.raises(DataError, match="--allow-different-data"):
        check(report, other)
    assert check(report, other, Tolerances(allow_different_data=True)).ok
    with pytest.raises(UserError, match="schema_version 7"):
        load_report(_write(tmp_path / "future.json", {**report, "schema_version": 7}))


def test_junit_counts_failures(report: dict) -> None:
    better = edited(report, "tflite-int8", workstation_accuracy=0.999)
    root = ET.fromstring(junit_xml(check(report, better, Tolerances(decide="point"))))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failures = [(c.get("classname"), c.get("name"), c.find("failure").get("message"))
                for c in root.iter("testcase") if c.find("failure") is not None]
    assert [f[:2] for f in failures] == [("tflite-int8", "accuracy")]
    assert "0.9990 -> 0.9701" in failures[0][2] and "p=0.125" in failures[0][2]
    assert int(suite.get("tests")) == len(list(root.iter("testcase"))) > 50


def test_cli_exit_codes_junit_and_step_summary(report: dict, tmp_path: Path) -> None:
    current = _write(tmp_path / "report.json", report)
    row = next(r for r in report["artifacts"] if r["name"] == "tflite-int8")
    baseline = _write(tmp_path / "baseline.json",
                      edited(report, "tflite-int8", bytes=int(row["bytes"] * 0.8)))
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}

    same = run_main("check", str(current), "--baseline", str(current), env=env)
    assert same.returncode == 0, same.stderr
    assert "all holds" in same.stdout

    junit = tmp_path / "out" / "check.xml"
    bad = run_main("check", str(current), "--baseline", str(baseline), "--junit", str(junit),
                  env=env)
    assert bad.returncode == 1, bad.stderr
    assert "tflite-int8" in bad.stdout and "+25.0%" in bad.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "all holds" in text
    assert "1 regression(s)" in text and "| tflite-int8 | size |" in text

    other = _write(tmp_path / "other.json", {**report, "data_fingerprint": "0000aaaa"})
    refused = run_main("check", str(current), "--baseline", str(other))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--allow-different-data" in refused.stderr
    allowed = run_main("check", str(current), "--baseline", str(other), "--allow-different-data")
    assert allowed.returncode == 0, allowed.stderr
    missing = run_main("check", str(tmp_path / "nope.json"), "--baseline", str(current))
    assert missing.returncode == 2 and "edge-transfer report" in missing.stderr


def test_a_device_budget_that_passed_and_now_fails_is_a_regression(report: dict) -> None:
    row = next(r for r in report["artifacts"] if r["name"] == "tflite-int8")
    assert row["checks"], "the validation JSON of the fixture has budget checks"
    budget = next(iter(row["checks"]))
    over = edited(report, "tflite-int8", checks={**row["checks"], budget: "fail"})
    baseline = edited(report, "tflite-int8", checks={**row["checks"], budget: "pass"})
    result = check(over, baseline)
    assert _failed(result) == [("tflite-int8", f"budget:{budget}")]
    assert "budget passed in the baseline, fail now" in result.regressions[0].message

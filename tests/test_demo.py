"""The README's first command, end to end: `edge-transfer demo` on the built-in digits data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from PIL import Image

import exporters

FIGURES = ("bytes", "ratio_to_fp32", "workstation_accuracy", "device_accuracy",
           "delta_vs_float", "latency_p50_ms", "fps", "peak_memory_mb")


@pytest.mark.slow
def test_demo_end_to_end_reports_every_artifact(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report_dir = out / "report"
    reported = [line for line in result.stdout.splitlines() if line.startswith("report:")]
    assert len(reported) == 1 and f"report: {report_dir / 'report.md'}" in reported[0]

    report = json.loads((report_dir / "report.json").read_text())
    exported = json.loads((out / "target" / "export" / "export.json").read_text())
    names = {a["name"] for a in exported["artifacts"]}
    asked = ("fp32", "fp16", "dynamic", "int8", "int16x8", "int8-qat")  # demo.toml's
    assert {f"{fmt}-{p}" for fmt in ("tflite", "onnx") for p in asked  # each exporter's share
            if p.removesuffix("-qat") in exporters.get(fmt).PRECISIONS} <= names
    rows = {row["name"]: row for row in report["artifacts"]}
    assert set(rows) == names
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["reason"])
        missing = [f for f in FIGURES if row[f] is None]
        assert not missing, f"{name} lacks {missing}"
        assert row["device_accuracy"] >= 0.85, name
        assert all(verdict == "pass" for verdict in row["checks"].values()), (name, row["checks"])

    for stage in ("source", "target"):   # none of the health warnings fires on the demo
        assert json.loads((out / stage / "run.json").read_text())["warnings"] == [], stage
    assert not [w for w in report["warnings"] if "chance" in w or "not the model" in w]

    transfer = report["transfer"]
    assert transfer["test_accuracy"] >= 0.85 and transfer["scratch_test_accuracy"] is not None
    assert transfer["source_accuracy_before"] is not None
    assert transfer["source_accuracy_after"] is not None

    markdown = (report_dir / "report.md").read_text()
    assert "| artifact |" in markdown and "tflite-int8-qat" in markdown
    with Image.open(report_dir / "accuracy_vs_size.png") as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 200

    same = run_cli("check", str(report_dir / "report.json"),
                   "--baseline", str(report_dir / "report.json"))
    assert same.returncode == 0, same.stdout + same.stderr

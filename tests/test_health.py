"""A model at chance, or predicting one class, is called out in one yellow line."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_main
from report_inputs import SAMPLES, write_inputs

from edge_transfer.core.samples import encode
from edge_transfer.train.messages import health_line


def test_a_run_at_chance_gets_one_line(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    metrics = {"test_accuracy": 0.2, "test_samples": 100, "val_accuracy": 0.2,
               "test_predictions": encode([0, 1, 2, 3, 4] * 20)}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    line = health_line(tmp_path, "the fine-tuned model")
    assert line is not None and line.startswith("the fine-tuned model is at chance")
    assert "contains 1/5 = 20.0" in line
    metrics |= {"test_accuracy": 0.9, "test_predictions": encode([0] * 95 + [1] * 5)}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert "predicts one class (a) for 95% of 100" in (health_line(tmp_path) or "")
    metrics |= {"test_predictions": encode([0, 1, 2, 3, 4] * 20)}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert health_line(tmp_path) is None


def test_report_warns_about_a_collapsed_file(tmp_path: Path) -> None:
    run, _ = write_inputs(tmp_path, validation=False)
    export = json.loads((run / "export" / "export.json").read_text())
    int8 = next(a for a in export["artifacts"] if a["name"] == "onnx-int8")
    int8["check"]["predictions"] = encode([2] * SAMPLES)
    int8["check"]["accuracy"] = int8["accuracy"] = 27 / SAMPLES
    (run / "export" / "export.json").write_text(json.dumps(export))
    proc = run_main("report", str(run), "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: onnx-int8 is at chance: accuracy 20.1 [14.2, 27.7] contains "
                        "1/5 = 20.0"]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["warnings"] == [warnings[0].removeprefix("warning: ")]
    assert "## Warnings" in (tmp_path / "r" / "report.md").read_text()

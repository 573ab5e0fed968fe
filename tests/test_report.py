"""report.json / report.md / the plots, built from export and validation JSON of the contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_main
from PIL import Image
from report_inputs import EXPORTS, FINGERPRINT, SAMPLES, write_inputs

from edge_transfer.core import stats
from edge_transfer.core.errors import DataError, UserError
from edge_transfer.report.build import build_report
from edge_transfer.report.plots import pareto_front

FIGURES = ("bytes", "gzip_bytes", "ratio_to_fp32", "workstation_accuracy", "device_accuracy",
           "device_samples", "reference_accuracy", "delta_vs_float", "device_gap",
           "latency_p50_ms", "fps", "peak_memory_mb")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("report")
    run, validation = write_inputs(root)
    path = build_report(run, root / "out", validation_json=validation)
    return json.loads(path.read_text()), root / "out"


def test_one_row_per_artifact_with_every_figure(built: tuple[dict, Path]) -> None:
    report, _ = built
    assert report["schema_version"] == 1 and report["data_fingerprint"] == FINGERPRINT
    assert [r["name"] for r in report["artifacts"]] == list(EXPORTS)
    rows = {r["name"]: r for r in report["artifacts"]}
    for name, row in rows.items():
        if EXPORTS[name] is None:
            continue
        assert row["status"] == "ok", name
        assert all(row[k] is not None for k in FIGURES), (name, row)
        assert row["checks"] == {"storage": "pass", "memory": "pass", "latency": "pass",
                                 "accuracy": "pass"}
    int8 = rows["tflite-int8"]
    assert int8["ratio_to_fp32"] == pytest.approx(15_072 / 41_312, abs=1e-4)
    assert rows["onnx-int8"]["ratio_to_fp32"] == pytest.approx(14_664 / 39_818, abs=1e-4)
    assert int8["delta_vs_float"] == pytest.approx(-1 / SAMPLES, abs=1e-6)
    assert int8["device_gap"] == 0.0 and int8["fps"] > 0
    # Per-sample figures: Wilson intervals, paired comparisons on the same 134 images.
    iv = stats.wilson(130, SAMPLES)
    assert int8["workstation_interval"] == pytest.approx([iv.low, iv.high], abs=1e-6)
    assert int8["vs_float"]["lost"] == 1 and int8["vs_float"]["gained"] == 0
    assert int8["vs_float"]["p_value"] == 1.0
    assert int8["device_vs_workstation"]["difference"] == 0.0
    assert report["samples"]["count"] == SAMPLES == report["device_samples"]["count"]
    assert report["warnings"] == []


def test_failed_artifact_keeps_its_reason_and_no_invented_figures(built: tuple[dict, Path]
                                                                   ) -> None:
    report, out = built
    failed = next(r for r in report["artifacts"] if r["name"] == "onnx-int8-qat")
    assert failed["status"] == "failed" and "QuantizeAndDequantizeV4" in failed["reason"]
    assert all(failed[k] is None for k in FIGURES)
    md = (out / "report.md").read_text()
    assert "## Failed artifacts" in md and "**onnx-int8-qat**: tf2onnx" in md
    line = next(s for s in md.splitlines() if s.startswith("| onnx-int8-qat |"))
    assert line.count("—") >= 9


def test_markdown_has_the_table_and_transfer_figures(built: tuple[dict, Path]) -> None:
    report, out = built
    md = (out / "report.md").read_text()
    assert "| artifact | format | precision | status | size | × fp32 |" in md
    assert sum(s.startswith("| tflite-") or s.startswith("| onnx-")
               for s in md.splitlines()) == len(EXPORTS)
    # Accuracies with their 95% Wilson interval, differences paired with interval and p.
    assert ("| tflite-int8 | tflite | int8 | ok | 14.7 KiB | 0.36× | 97.0% [92.6, 98.8] | "
            "97.0% [92.6, 98.8] | -0.7 pt [-4.3, +2.4] p=1 |") in md
    assert md.count("*How to read this:*") == 5   # the 5th: which file to deploy (issue 25)
    assert "## What quantization changed, per class" in md
    assert "| 8 | 27 | 27 | -1 (−1/+0) | -1 (−1/+0) | -1 (−1/+0) |" in md
    t = report["transfer"]
    assert t["transfer_gain"] == pytest.approx(0.9427 - 0.7181)
    assert t["forgetting"] == pytest.approx(0.9866 - 0.6920)
    assert "| test accuracy (scratch) | 71.8% |" in md and "| transfer gain | +22.5 pt |" in md


def test_plots_are_real_images(built: tuple[dict, Path]) -> None:
    report, out = built
    assert report["files"] == {"markdown": "report.md", "plot": "accuracy_vs_size.png",
                               "confusion": "confusion_float_vs_int8.png",
                               "latency_plots": ["accuracy_vs_latency.png"]}
    for name in ("accuracy_vs_size.png", "confusion_float_vs_int8.png",
                 "accuracy_vs_latency.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width > 300 and img.height > 200
    assert not list(out.glob(".*.tmp"))


def test_without_validation_or_transfer_figures_they_are_missing(tmp_path: Path) -> None:
    run, _ = write_inputs(tmp_path, transfer=False, validation=False)
    report = json.loads(build_report(run, tmp_path / "out").read_text())
    assert report["transfer"] is None and report["device"] is None
    row = report["artifacts"][0]
    assert row["workstation_accuracy"] is not None and row["device_accuracy"] is None
    assert row["latency_p50_ms"] is None and row["checks"] == {}
    assert report["files"]["confusion"] is None
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Transfer" not in md and "device: not validated" in md
    Image.open(tmp_path / "out" / "accuracy_vs_size.png").verify()


def test_device_gap_is_taken_on_the_device_sample(tmp_path: Path) -> None:
    """The bundle's sample is not export.json's split: the gap compares like with like."""
    run, validation = write_inputs(tmp_path)
    data = json.loads(validation.read_text())
    for art in data["artifacts"]:
        art |= {"samples": 225, "workstation_accuracy": 214 / 225, "accuracy": 214 / 225}
    data["artifacts"][1]["accuracy"] = 212 / 225
    validation.write_text(json.dumps(data))
    rows = json.loads(build_report(run, tmp_path / "out", validation_json=validation)
                      .read_text())["artifacts"]
    assert rows[0]["workstation_accuracy"] == pytest.approx(131 / 134)
    assert rows[0]["reference_accuracy"] == pytest.approx(214 / 225)
    assert rows[0]["device_gap"] == 0.0 and rows[0]["device_samples"] == 225
    assert rows[1]["device_gap"] == pytest.approx(-2 / 225, abs=1e-6)


def test_export_of_other_data_is_refused(tmp_path: Path) -> None:
    run, _ = write_inputs(tmp_path)
    other = tmp_path / "other"
    _, other_validation = write_inputs(other, fingerprint="0000aaaa")
    with pytest.raises(DataError, match="other data"):
        build_report(run, tmp_path / "out", validation_json=other_validation)
    with pytest.raises(UserError, match="edge-transfer export"):
        build_report(run, tmp_path / "out", export_json=tmp_path / "nowhere")


def test_cli_report_bad_input_exit_2(tmp_path: Path) -> None:
    run, validation = write_inputs(tmp_path)
    ok = run_main("report", str(run), "--validation", str(validation), "--out",
                 str(tmp_path / "r"))
    assert ok.returncode == 0, ok.stderr
    assert "tflite-int8" in ok.stdout and str(tmp_path / "r" / "report.md") in ok.stdout
    bad = run_main("report", str(tmp_path / "missing"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "edge-transfer finetune" in bad.stderr


def test_pareto_front() -> None:
    points = [(40.0, 0.97), (22.0, 0.97), (15.0, 0.96), (14.5, 0.97), (16.0, 0.95)]
    assert pareto_front(points) == [3]
    assert pareto_front([(1.0, 0.5), (2.0, 0.6), (3.0, 0.55)]) == [0, 1]

"""Issue 25: bundles measure each file once and ship a bounded stratified sample; validate,
bench and report say which file to deploy per device, with latency measured one way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main
from runtime_export import bundle_folder, export_folder

from edge_transfer.core.records import Manifest, ValidationResult
from edge_transfer.core.samples import decode
from edge_transfer.deploy.recommend import Candidate, recommend
from edge_transfer.train.runs import Run


@pytest.fixture(scope="session")
def digits_bundle(digits_run: Path) -> Path:
    return bundle_folder(digits_run)


# --------------------------------------------------------------------------- the rule


def _right(n: int, wrong: int = 0) -> np.ndarray:
    out = np.ones(n, bool)
    out[:wrong] = False
    return out


def test_recommendation_rule_accuracy_budgets_speed_then_size() -> None:
    ref = _right(2000, 100)
    files = [
        Candidate("tflite-fp32", "tflite", "fp32", 4000, 0.72, ref),
        Candidate("tflite-fp16", "tflite", "fp16", 2000, 0.49, ref),
        # int8 loses 60 more images of 2,000 (3 pt, significant): excluded, though fastest
        Candidate("tflite-int8", "tflite", "int8", 1000, 0.30, _right(2000, 160)),
        Candidate("onnx-fp32", "onnx", "fp32", 4100, 0.50, ref),     # within 5% of fp16
        Candidate("onnx-int8", "onnx", "int8", 1100, 0.10, ref, over_budget=("memory",)),
        Candidate("onnx-fp16", "onnx", "fp16", 2100, None, None, unavailable="skipped: no"),
    ]
    rec = recommend(files, ref, 0.005, device="local")
    assert rec.artifact == "tflite-fp16"            # a tie with onnx-fp32: the smaller file
    assert rec.ranking == ("tflite-fp16", "onnx-fp32", "tflite-fp32")
    assert "significant" in rec.excluded["tflite-int8"]
    assert rec.excluded["onnx-int8"] == "over the profile's memory budget"
    assert rec.excluded["onnx-fp16"] == "skipped: no"
    assert "tflite-fp16 is 1.5x faster than tflite-fp32 on this device and saves 50% of the " \
           "bytes" in rec.trades
    assert "onnx-int8 is 5.0x faster than onnx-fp32 on this device and saves 73% of the " \
           "bytes" in rec.trades
    untimed = recommend([Candidate(c.name, c.format, c.precision, c.bytes, None, c.correct)
                         for c in files[:2]], ref, 0.005, device="pi")
    assert untimed.artifact == "tflite-fp16" and "no latency measured" in untimed.basis
    nothing = recommend(files[2:3], ref, 0.005, device="local")
    assert nothing.artifact is None and nothing.reason.startswith("no file qualifies")


# --------------------------------------------------------------------------- bundle


def test_bundle_reuses_export_predictions_and_says_what_it_measured(
        digits_run: Path, tmp_path: Path) -> None:
    export_dir = Path(shutil.copytree(export_folder(digits_run), tmp_path / "export"))
    record = json.loads((export_dir / "export.json").read_text())
    victim = next(a for a in record["artifacts"] if a["status"] == "ok")
    victim["check"]["predictions"] = None                    # this one must be measured
    (export_dir / "export.json").write_text(json.dumps(record))
    out = tmp_path / "bundle"
    proc = run_main("bundle", str(digits_run), "--out", str(out), "--export-dir",
                   str(export_dir))
    assert proc.returncode == 0, proc.stderr
    manifest = Manifest.load(out)
    sources = {a.name: a.predictions_from for a in manifest.artifacts}
    assert sources.pop(victim["name"]) == "bundle"
    assert set(sources.values()) == {"export.json"}
    assert f"{victim['name']}: measured here on" in proc.stdout
    assert "export.json has no per-sample predictions" in proc.stdout
    assert proc.stdout.count("reused export.json's predictions") == len(sources)
    measured = next(a for a in manifest.artifacts if a.name == victim["name"])
    checks = {a["name"]: a["check"]["predictions"]
              for a in json.loads((export_folder(digits_run) / "export.json").read_text())
              ["artifacts"] if a["status"] == "ok"}
    assert measured.workstation_predictions == checks[victim["name"]]  # same as export's
    again = run_main("bundle", str(digits_run), "--out", str(out), "--export-dir",
                    str(export_dir))                          # nothing changed: nothing run
    assert again.returncode == 0, again.stderr
    assert f"{victim['name']}: reused the replaced bundle's predictions" in again.stdout
    assert "measured here" not in again.stdout
    assert Manifest.load(out).artifacts == manifest.artifacts


def test_bundle_sample_is_bounded_stratified_and_paired(digits_run: Path, digits_bundle: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "small"
    proc = run_main("bundle", str(digits_run), "--out", str(out), "--samples", "60",
                   "--export-dir", str(export_folder(digits_run)))
    assert proc.returncode == 0, proc.stderr
    manifest = Manifest.load(out)
    test = Run.open(digits_run).splits.test
    ids = manifest.samples
    assert ids is not None and ids.count == 60 and manifest.split_samples == len(test.y)
    positions = decode(ids.indices)
    assert np.array_equal(ids.label_array(), np.asarray(test.y)[positions])
    share = np.bincount(ids.label_array(), minlength=5) / 60
    assert np.all(np.abs(share - np.bincount(test.y, minlength=5) / len(test.y)) <= 1 / 60)
    with np.load(out / "validation.npz") as sample:
        assert np.array_equal(sample["x"], test.x[positions].read())
    assert f"validation sample: 60 of {len(test.y)} test images" in proc.stdout
    whole = Manifest.load(digits_bundle)            # the default keeps a small split whole
    for small, full in zip(manifest.artifacts, whole.artifacts, strict=True):
        assert np.array_equal(decode(small.workstation_predictions or ""),
                              decode(full.workstation_predictions or "")[positions])
    assert run_main("bundle", str(digits_run), "--out", str(tmp_path / "x"),
                   "--samples", "0").returncode == 2
    # the device's predictions pair with the workstation's and the float model's
    result = tmp_path / "v.json"
    proc = run_main("validate", str(out), "--json", str(result), "--artifact", "tflite-fp32",
                   "--artifact", "tflite-int8")
    assert proc.returncode in (0, 1), proc.stderr   # 1: a latency budget on a busy machine
    validation = ValidationResult.load(result)
    assert validation.samples == ids
    assert all(len(decode(r.predictions or "")) == 60 for r in validation.artifacts)


def test_bundle_for_a_profile_ships_what_it_runs_and_marks_the_file(
        digits_run: Path, tmp_path: Path) -> None:
    export_dir = str(export_folder(digits_run))
    coral = tmp_path / "coral"
    proc = run_main("bundle", str(digits_run), "--out", str(coral), "--for", "coral-dev-board",
                   "--export-dir", export_dir)
    assert proc.returncode == 0, proc.stderr
    manifest = Manifest.load(coral)
    assert {(a.format, a.precision) for a in manifest.artifacts} == {("tflite", "int8")}
    assert all(not a.kept_float for a in manifest.artifacts)
    assert "onnx-fp32" in manifest.left_out and manifest.profile == "coral-dev-board"
    assert manifest.recommended in {a.name for a in manifest.artifacts}
    assert manifest.recommendation and "not timed" in manifest.recommendation.basis
    here = tmp_path / "x86"
    proc = run_main("bundle", str(digits_run), "--out", str(here), "--for", "generic-x86-64",
                   "--export-dir", export_dir)
    assert proc.returncode == 0, proc.stderr
    manifest = Manifest.load(here)
    timed = [a.latency for a in manifest.artifacts]
    assert all(t is not None and t.runs == 100 and t.warmup == 5 and t.threads == 2
               for t in timed)
    rec = manifest.recommendation
    assert rec and rec.artifact == rec.ranking[0] and "measured on the device" in rec.basis
    assert f"recommended for generic-x86-64: {rec.artifact}" in proc.stdout


# --------------------------------------------------------------------------- validate, report


def test_validate_and_report_say_which_file_to_deploy(digits_run: Path, digits_bundle: Path,
                                                      tmp_path: Path) -> None:
    first, second = tmp_path / "local.json", tmp_path / "threads1.json"
    proc = run_main("validate", str(digits_bundle), "--json", str(first))
    assert proc.returncode in (0, 1), proc.stderr   # 1: a latency budget on a busy machine
    result = ValidationResult.load(first)
    rec = result.recommendation
    assert rec is not None and rec.artifact in rec.ranking and rec.device == "local"
    assert f"deploy on local (profile generic-x86-64): {rec.artifact}" in proc.stdout
    assert "5 warm-up then 100 timed runs, median and IQR, 2 threads" in proc.stdout
    for row in result.artifacts:
        assert row.latency and row.latency.threads == 2 and row.latency.iqr is not None
        assert row.latency.p50 == pytest.approx(row.latency_ms["p50"])
    # a second device (here: one thread) gets its own recommendation and plot
    proc = run_main("validate", str(digits_bundle), "--json", str(second), "--threads", "1",
                   "--artifact", "tflite-fp32", "--artifact", "onnx-fp32")
    assert proc.returncode in (0, 1), proc.stderr
    out = tmp_path / "report"
    proc = run_main("report", str(digits_run), "--export", str(export_folder(digits_run)),
                   "--validation", str(first), "--validation", str(second), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert len(report["recommendations"]) == 2
    assert report["recommendations"][0]["artifact"] == rec.artifact
    assert report["files"]["latency_plots"] == ["accuracy_vs_latency.png",
                                                "accuracy_vs_latency_local.png"]
    assert all((out / name).stat().st_size > 10_000 for name in report["files"]["latency_plots"])
    markdown = (out / "report.md").read_text()
    assert "## Which file to deploy" in markdown and f"recommended: {rec.artifact}" in markdown
    assert report["artifacts"][0]["latency"]["runs"] == 100


def test_an_old_bundle_still_validates_and_gets_a_recommendation(digits_bundle: Path,
                                                                 tmp_path: Path) -> None:
    old = Path(shutil.copytree(digits_bundle, tmp_path / "old"))
    data = json.loads((old / "manifest.json").read_text())
    for key in ("split_samples", "float_predictions", "left_out"):
        data.pop(key, None)
    for artifact in data["artifacts"]:
        artifact.pop("predictions_from", None)
    (old / "manifest.json").write_text(json.dumps(data))
    out = tmp_path / "v.json"
    proc = run_main("validate", str(old), "--json", str(out), "--artifact", "tflite-fp32",
                   "--artifact", "tflite-int8")
    assert proc.returncode in (0, 1), proc.stderr
    rec = ValidationResult.load(out).recommendation
    assert rec is not None and rec.artifact in ("tflite-fp32", "tflite-int8")
    assert "against tflite-fp32 on the device (no float predictions" in rec.reason

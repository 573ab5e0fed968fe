"""QAT and pruned files are judged against the float model the user had; their fine-tune
and their conversion are each a second paired comparison that names the step that lost
accuracy (issue 22). numpy only, except the last test (a real QAT export of a small model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from _bad_layer import write_bad_layer_run
from report_inputs import SAMPLES, export_record, predictions, write_run

from edge_transfer.core.records import ExportRecord
from edge_transfer.export.config import ExportConfig
from edge_transfer.export.pipeline import export_run
from edge_transfer.report.build import build_report
from edge_transfer.report.comparisons import paired_difference
from exporters.check import check_outputs, failure_reason

CLASSES = 5


def _onehot(top1: np.ndarray) -> np.ndarray:
    return np.eye(CLASSES, dtype=np.float32)[top1] * 0.9 + 0.02


def _labels(n: int = 200) -> np.ndarray:
    return np.arange(n) % CLASSES


def _wrong(y: np.ndarray, first: int) -> np.ndarray:
    """``y`` with its first ``first`` samples moved to the next class."""
    out = y.copy()
    out[:first] = (out[:first] + 1) % CLASSES
    return out


def test_a_qat_fine_tune_that_lost_accuracy_fails_and_says_so() -> None:
    """The file matches its QAT model exactly (what the old check looked at: it passed), but
    the QAT model lost 50 points against the float model: the file fails, naming the
    fine-tune, with both steps' paired figures."""
    y = _labels()
    float_out, qat_model = _onehot(y), _onehot(_wrong(y, 100))
    check = check_outputs(qat_model, qat_model, y, precision="int8", float_accuracy=1.0,
                          max_drop=0.05, float_reference=float_out, step="QAT")
    assert not check.passed
    assert check.vs_float is not None and check.vs_float.difference == -0.5
    assert check.top1_agreement == 1.0     # with the model it was converted from
    steps = check.steps
    assert steps is not None and steps.step == "QAT" and steps.model_accuracy == 0.5
    assert steps.fine_tune.difference == -0.5 and steps.conversion.difference == 0.0
    assert steps.agreement == 1.0
    reason = failure_reason(check, float_accuracy=1.0, max_drop=0.05)
    assert "-50.0 pt" in reason and "from the float model" in reason
    assert "the QAT fine-tune lost 50.0 pt: QAT model 0.5000 vs float 1.0000" in reason
    assert "the conversion kept it: file vs QAT model +0.0 pt" in reason


def test_a_conversion_that_lost_accuracy_is_named() -> None:
    y = _labels()
    float_out = _onehot(y)
    file_out = _onehot(_wrong(y, 60))
    check = check_outputs(file_out, float_out, y, precision="int8", float_accuracy=1.0,
                          max_drop=0.05, float_reference=float_out, step="pruning")
    assert not check.passed and check.steps is not None
    reason = failure_reason(check, float_accuracy=1.0, max_drop=0.05)
    assert "the conversion lost 30.0 pt: file vs pruning model -30.0 pt" in reason
    assert "the pruning fine-tune kept it" in reason


def test_a_qat_model_that_kept_its_accuracy_passes() -> None:
    y = _labels()
    float_out = _onehot(_wrong(y, 10))
    qat_model = _onehot(_wrong(y, 12))
    check = check_outputs(qat_model, qat_model, y, precision="int8", float_accuracy=0.95,
                          max_drop=0.05, float_reference=float_out, step="QAT")
    assert check.passed and check.steps is not None
    assert check.vs_float is not None and check.vs_float.lost == 2


def test_post_training_variants_have_no_steps() -> None:
    y = _labels()
    float_out = _onehot(y)
    check = check_outputs(float_out, float_out, y, precision="int8", float_accuracy=1.0,
                          max_drop=0.05, float_reference=float_out, step=None)
    assert check.passed and check.steps is None


def _report(tmp_path: Path, record: dict) -> dict:
    run = write_run(tmp_path / "run")
    (run / "export").mkdir()
    (run / "export" / "export.json").write_text(json.dumps(record))
    return json.loads(build_report(run, tmp_path / "out").read_text())


def test_an_old_export_json_qat_row_is_compared_with_the_float_model(tmp_path: Path) -> None:
    """An export.json written before ``steps``: its QAT row's ``vs_float`` was against the
    QAT model (no loss). The report reads it and recomputes the comparison from the kept
    predictions against the float model's."""
    record = export_record(tmp_path / "run")
    row = next(a for a in record["artifacts"] if a["name"] == "tflite-int8-qat")
    row["accuracy"] = row["check"]["accuracy"] = 70 / SAMPLES
    row["check"]["predictions"] = predictions(70)
    row["check"]["vs_float"] = {"n": SAMPLES, "difference": 0.0, "low": -0.02, "high": 0.02,
                                "p_value": 1.0, "lost": 0, "gained": 0}
    report = _report(tmp_path, record)
    qat = next(r for r in report["artifacts"] if r["name"] == "tflite-int8-qat")
    assert round(qat["vs_float"]["difference"], 4) == round((70 - 131) / SAMPLES, 4)
    assert qat["vs_float"]["lost"] == 61 and "steps" not in qat
    assert any(w.startswith("tflite-int8-qat is -45.5 pt") and "export again" in w
               for w in report["warnings"]), report["warnings"]


def test_the_report_carries_both_steps(tmp_path: Path) -> None:
    record = export_record(tmp_path / "run")
    row = next(a for a in record["artifacts"] if a["name"] == "tflite-int8-qat")
    steps = {"step": "QAT", "model_accuracy": 131 / SAMPLES,
             "fine_tune": {"n": SAMPLES, "difference": 0.0, "low": -0.03, "high": 0.03,
                           "p_value": 1.0, "lost": 0, "gained": 0},
             "conversion": {"n": SAMPLES, "difference": 0.0, "low": -0.03, "high": 0.03,
                            "p_value": 1.0, "lost": 0, "gained": 0},
             "agreement": 1.0}
    row["check"]["steps"] = steps
    row["check"]["vs_float"] = {"n": SAMPLES, "difference": 0.0, "low": -0.03, "high": 0.03,
                                "p_value": 1.0, "lost": 0, "gained": 0}
    report = _report(tmp_path, record)
    qat = next(r for r in report["artifacts"] if r["name"] == "tflite-int8-qat")
    assert qat["steps"]["step"] == "QAT" and qat["steps"]["agreement"] == 1.0
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## QAT and pruned files, step by step" in markdown
    assert ("**tflite-int8-qat**: neither step lost accuracy: the QAT fine-tune: QAT model"
            in markdown)


def test_a_real_qat_export_records_both_steps(tmp_path: Path) -> None:
    """export --qat --prune on a small model: each trained file's vs_float is against the
    float model's own predictions, and its steps pair the trained model in between."""
    run = write_bad_layer_run(tmp_path / "run", trap=False, epochs=6)
    export_run(run, ExportConfig(formats=("tflite",), precisions=("int8",), qat=True,
                                 prune=0.5, out=tmp_path / "export"))
    record = ExportRecord.load(tmp_path / "export")
    for name in ("tflite-int8-qat", "tflite-int8-pruned50"):
        row = record.artifact(name)
        check = row.check
        assert check is not None and check.steps is not None and check.vs_float is not None
        expected = paired_difference(record.samples, record.float_predictions,
                                     check.predictions)
        assert expected is not None
        assert check.vs_float.difference == expected.difference
        steps = check.steps
        assert steps.step == ("QAT" if "qat" in name else "pruning")
        assert steps.model_predictions is not None
        fine_tune = paired_difference(record.samples, record.float_predictions,
                                      steps.model_predictions)
        assert fine_tune is not None and steps.fine_tune.difference == fine_tune.difference
        total = steps.fine_tune.difference + steps.conversion.difference
        assert abs(total - check.vs_float.difference) < 1e-9
    plain = record.artifact("tflite-int8").check
    assert plain is not None and plain.steps is None

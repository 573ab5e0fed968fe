"""One report per run: ``report.json``, ``report.md`` (rendered by
:mod:`edge_transfer.report.markdown`) and the plots (drawn by :mod:`edge_transfer.report.plots`).

It stands on the JSON files the other steps write (no TensorFlow, no model loading):

    RUN/run.json, RUN/metrics.json     data fingerprint; transfer figures when asked for
    RUN/export/export.json             one record per exported artifact (schema 1)
    validation JSON (optional)         what the device measured (``edge-transfer validate``)

``report.json`` (schema_version 1)::

    {"schema_version": 1, "run": "...", "data_fingerprint": "...", "labels": [...],
     "float_accuracy": 0.97, "device": {...} | null,
     "transfer": {"test_accuracy", "val_accuracy", "scratch_test_accuracy", "transfer_gain",
                  "source_accuracy_before", "source_accuracy_after", "forgetting"} | null,
     "files": {"markdown": "report.md", "plot": "accuracy_vs_size.png",
               "confusion": "confusion_float_vs_int8.png" | null},
     "artifacts": [{"name", "format", "precision", "qat", "sparsity", "status", "reason",
                    "export_status", "device_status", "file", "bytes", "gzip_bytes",
                    "ratio_to_fp32", "workstation_accuracy", "device_accuracy",
                    "device_samples", "reference_accuracy", "delta_vs_float", "device_gap",
                    "latency_p50_ms", "fps", "peak_memory_mb",
                    "checks": {"storage": "pass", ...}, "agreement_top1", "max_abs_diff",
                    "predictions", "device_predictions", "reference_predictions",
                    "workstation_interval", "device_interval", "vs_float",
                    "device_vs_workstation", "health", "steps" (QAT / pruned only),
                    "clients": [{"artifact", "client", "status", "reason", "version", "samples",
                    "agreement", "agreement_low", "agreement_high", "accuracy", "vs_runtime",
                    "predictions"}]}],
     "samples", "device_samples", "float_predictions", "float_interval", "warnings"}

Per-sample figures (:mod:`edge_transfer.core.samples`, :mod:`edge_transfer.core.stats`):
``samples`` and
``device_samples`` name the samples (data fingerprint, split, positions, labels) the
``predictions`` (workstation, test split) and ``device_predictions`` were made on; the
intervals are 95% Wilson intervals ``[low, high]``; ``vs_float`` (the file against the float
model) and ``device_vs_workstation`` are paired comparisons on the same samples (difference,
95% Newcombe interval, exact McNemar p, lost and gained samples); ``health`` and
``warnings`` name models at chance or predicting one class. ``steps`` (a QAT or pruned file)
pairs its fine-tune (the trained Keras model against the float model) and its conversion (the
file against that trained model); its ``vs_float`` is against the float model the user had,
recomputed from the predictions for an export.json older than ``steps``.

``workstation_accuracy`` is export.json's (the run's test split); ``delta_vs_float`` is
it minus ``float_accuracy``. ``device_accuracy`` was measured on the bundle's validation sample,
``reference_accuracy`` is the workstation's on that same sample, ``device_gap`` the difference.
``agreement_top1`` and ``max_abs_diff`` compare the device's outputs with the workstation's on
that sample (validation JSON ``agreement``, from ``--device emulated:arm64``), else null.

``clients`` are the file's rows of ``validate --client`` (a deploy client's own API on the
device's images; ``agreement``: top-1 equal to our runtime's, 95% Wilson interval;
``vs_runtime``: the paired accuracy difference client - runtime).

A figure nobody measured is ``null`` in the JSON and "—" in the Markdown, never invented.

Not run as a doctest (it needs a run and its export; tests/test_report.py writes them):

>>> path = build_report("runs/target", "runs/target/report")      # doctest: +SKIP
>>> json.loads(path.read_text())["artifacts"][0]["ratio_to_fp32"]  # doctest: +SKIP
0.27
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_transfer.core import stats
from edge_transfer.core.errors import DataError, UserError
from edge_transfer.core.records.export import ExportArtifact, ExportDecision, ExportRecord
from edge_transfer.core.records.incremental import IncrementalHistory
from edge_transfer.core.records.paired import Comparison, SampleIds
from edge_transfer.core.records.report import Report, ReportFiles, ReportRow, TransferFigures
from edge_transfer.core.records.run import RunInfo, RunMetrics
from edge_transfer.core.records.validation import ValidationResult, ValidationRow
from edge_transfer.report import comparisons, plots
from edge_transfer.report.markdown import render_markdown
from edge_transfer.train.runs import METRICS_FILE

REPORT_FILE = Report.FILE_NAME
MARKDOWN_FILE = "report.md"
PLOT_FILE = "accuracy_vs_size.png"
CONFUSION_FILE = "confusion_float_vs_int8.png"


@dataclass(frozen=True)
class Inputs:
    """The files a report stands on, read and checked against each other."""

    run_dir: Path
    fingerprint: str
    metrics: RunMetrics
    export_path: Path
    export: ExportRecord
    validation_path: Path | None = None
    validation: ValidationResult | None = None

    @property
    def device_rows(self) -> dict[str, ValidationRow]:
        return {a.name: a for a in (self.validation.artifacts if self.validation else ())}


def build_report(
    run_dir: str | Path,
    out_dir: str | Path,
    export_json: str | Path | None = None,
    validation_json: str | Path | Sequence[str | Path] | None = None,
) -> Path:
    """Write report.json, report.md, the plot(s) into ``out_dir``; return report.json's path.

    ``export_json`` is export.json or its folder (default ``RUN/export``);
    ``validation_json`` one validation JSON or several (one per device: the first fills the
    artifact table; each gets its recommended file and accuracy-vs-latency plot).
    """
    from edge_transfer.report import devices as report_devices

    out_dir = Path(out_dir)
    paths = ([] if validation_json is None else [validation_json]
             if isinstance(validation_json, str | Path) else list(validation_json))
    inputs = load_inputs(run_dir, export_json, paths[0] if paths else None)
    report = assemble(inputs)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder for the report")
    out_dir.mkdir(parents=True, exist_ok=True)
    validations = ([inputs.validation] if inputs.validation else []) + [
        report_devices.load_validation(p, inputs.fingerprint) for p in paths[1:]]
    recs = report_devices.recommendations(inputs.export, validations)
    confusion = _confusion_pair(report.artifacts, inputs.device_rows)
    report = dataclasses.replace(report, recommendations=recs, files=ReportFiles(
        markdown=MARKDOWN_FILE, plot=PLOT_FILE, confusion=CONFUSION_FILE if confusion else None,
        latency_plots=report_devices.write_plots(validations, recs, out_dir)))
    plots.accuracy_vs_size(report, out_dir / PLOT_FILE)
    if confusion:
        plots.confusion(confusion, report.labels, out_dir / CONFUSION_FILE)
    from edge_transfer.export.diagnose import markdown_section

    diagnosis = markdown_section(_export_path(Path(run_dir), export_json).parent, out_dir)
    deploy = report_devices.markdown(validations, recs, report.files.latency_plots
                                     if report.files else ())
    _write_text(out_dir / MARKDOWN_FILE,
                render_markdown(report) + "\n".join(["", *deploy]) + diagnosis)
    return report.dump(out_dir / REPORT_FILE)


def load_inputs(run_dir: str | Path, export_json: str | Path | None = None,
                validation_json: str | Path | None = None) -> Inputs:
    """Read run.json, metrics.json, export.json and the validation JSON; same data or UserError."""
    run_dir = Path(run_dir)
    retrain = "fine-tune the run again (`edge-transfer finetune --out RUN`)"
    run_info = RunInfo.load(run_dir / RunInfo.FILE_NAME, error=UserError, fix=retrain,
                            missing=f"{run_dir} is not a run directory; create it with "
                                    "`edge-transfer finetune --out`")
    fingerprint = run_info.data.fingerprint
    if not fingerprint:
        raise UserError(f"{run_dir / RunInfo.FILE_NAME} has no data fingerprint; {retrain}")
    metrics_path = run_dir / METRICS_FILE
    metrics = (RunMetrics.load(metrics_path, error=UserError, fix=retrain)
               if metrics_path.is_file() else RunMetrics())
    export_path = _export_path(run_dir, export_json)
    export = ExportRecord.load(
        export_path, error=UserError,
        fix=f"run `edge-transfer export {run_dir}` first, or pass --export DIR")
    _check_fingerprint(fingerprint, export.data_fingerprint, export_path,
                       f"export the run again: `edge-transfer export {run_dir}`")
    if validation_json is None:
        return Inputs(run_dir, fingerprint, metrics, export_path, export)
    validation_path = Path(validation_json)
    validation = ValidationResult.load(
        validation_path, error=UserError,
        fix="write it with `edge-transfer validate BUNDLE --json OUT`")
    _check_fingerprint(fingerprint, validation.data_fingerprint, validation_path,
                       "bundle and validate this run's export again")
    return Inputs(run_dir, fingerprint, metrics, export_path, export, validation_path,
                  validation)


def assemble(inputs: Inputs) -> Report:
    """The report record (nothing written)."""
    from edge_transfer.train.health import training_warnings

    export, device_rows = inputs.export, inputs.device_rows
    float_accuracy = export.float_accuracy
    samples = export.samples
    device_samples = inputs.validation.samples if inputs.validation else None
    context = _Context(samples, export.float_predictions, device_samples, export.labels)
    rows = _with_ratios([_row(a, device_rows.get(a.name), float_accuracy, context)
                         for a in export.artifacts])
    if inputs.validation and inputs.validation.clients:
        rows = [dataclasses.replace(r, clients=tuple(
            c for c in inputs.validation.clients if c.artifact == r.name)) for r in rows]
    float_iv = (comparisons.accuracy_interval(samples, export.float_predictions)
                or comparisons.interval_of(float_accuracy, samples.count if samples else None))
    return Report(
        samples=samples, device_samples=device_samples,
        float_predictions=export.float_predictions,
        float_interval=_pair(float_iv),
        warnings=tuple(training_warnings(inputs.run_dir) + _warnings(export, rows, context)),
        run=str(inputs.run_dir),
        export=str(inputs.export_path),
        validation=str(inputs.validation_path) if inputs.validation_path else None,
        data_fingerprint=inputs.fingerprint,
        labels=export.labels,
        float_accuracy=float_accuracy,
        device=inputs.validation.device if inputs.validation else None,
        transfer=transfer_figures(inputs.metrics, samples),
        artifacts=tuple(rows),
        incremental=_incremental(inputs.run_dir),
    )


def _incremental(run_dir: Path) -> IncrementalHistory | None:
    """The run's class-incremental history (``extend``), if it has one."""
    path = Path(run_dir) / IncrementalHistory.FILE_NAME
    return IncrementalHistory.load(path, error=UserError) if path.is_file() else None


@dataclass(frozen=True)
class _Context:
    """What every row is compared against: the test samples and the float model's top-1
    on them, the samples the device ran, and the class names."""

    samples: SampleIds | None
    float_predictions: str | None
    device_samples: SampleIds | None
    labels: tuple[str, ...]


def _counts(samples: SampleIds | None, n: int | None) -> bool:
    """True when a figure measured on ``n`` samples was measured on ``samples``' count."""
    return samples is not None and n == samples.count


def _pair(interval: stats.Interval | None) -> tuple[float, ...] | None:
    return None if interval is None else (round(interval.low, 6), round(interval.high, 6))


def _comparison(paired: stats.Paired | None) -> Comparison | None:
    return None if paired is None else Comparison.of(paired)


def _warnings(export: ExportRecord, rows: Sequence[ReportRow], context: _Context) -> list[str]:
    """One line each: a model at chance or collapsed onto one class, and export checks too
    small to resolve a drop of their tolerance."""
    out = []
    float_line = comparisons.health(context.samples, context.float_predictions,
                                    context.labels, "the float model")
    if float_line:
        out.append(float_line)
    out += [r.health for r in rows if r.health and r.health not in out]
    under = sorted({a.check.underpowered for a in export.artifacts
                    if a.check is not None and a.check.underpowered})
    out += [f"export checks: {u}" for u in under[:1]]
    return out + _unjudged(export, rows)


def _unjudged(export: ExportRecord, rows: Sequence[ReportRow]) -> list[str]:
    """An export.json older than ``steps`` judged its QAT and pruned files against their own
    trained model: one line for each ``ok`` one that is a regression against the float model
    (paired, by the export's own tolerance and rule)."""
    decision = export.decision or ExportDecision(max_accuracy_drop=0.05)
    out = []
    for row in rows:
        cmp = row.vs_float
        if (row.status != "ok" or row.steps is not None or cmp is None
                or not (row.qat or row.sparsity is not None)):
            continue
        significant = decision.decide == "point" or cmp.p_value < decision.alpha
        if cmp.difference < -decision.max_accuracy_drop and significant:
            out.append(f"{row.name} is {cmp.describe()} against the float model, but its "
                       "export.json (older than the step-by-step check) judged it only against "
                       "its own trained model: export again to judge it")
    return out


def transfer_figures(metrics: RunMetrics, samples: SampleIds | None = None
                     ) -> TransferFigures | None:
    """Transfer against scratch and the forgetting figure, when the run measured them.

    With the test split's predictions of both models (metrics.json) and the test samples'
    identity, the transfer gain is paired: ``transfer_gain_low``/``_high`` (95% interval) and
    ``transfer_gain_p`` (exact McNemar); ``test_samples`` is the size of the test split.

    >>> m = RunMetrics(test_accuracy=0.95, scratch_test_accuracy=0.80)
    >>> transfer_figures(m).transfer_gain
    0.15
    >>> transfer_figures(RunMetrics(test_accuracy=0.95)) is None
    True
    """
    if not metrics.transfer_measured:
        return None
    m = metrics
    out = TransferFigures(
        test_accuracy=m.test_accuracy, val_accuracy=m.val_accuracy,
        scratch_test_accuracy=m.scratch_test_accuracy,
        source_accuracy_before=m.source_accuracy_before,
        source_accuracy_after=m.source_accuracy_after,
        transfer_gain=_diff(m.test_accuracy, m.scratch_test_accuracy),
        forgetting=_diff(m.source_accuracy_before, m.source_accuracy_after),
        test_samples=_num(m.test_samples))
    gain = comparisons.paired_difference(samples, m.scratch_test_predictions,
                                         m.test_predictions)
    if gain is None:
        return out
    return dataclasses.replace(out, transfer_gain_low=round(gain.interval.low, 6),
                               transfer_gain_high=round(gain.interval.high, 6),
                               transfer_gain_p=gain.p_value)


def _row(art: ExportArtifact, dev: ValidationRow | None,
         float_accuracy: float | None, context: _Context) -> ReportRow:
    """One artifact: export.json's figures (on the test split), then the device's (on the
    bundle's sample), then a warning if either is at chance or predicts one class."""
    device_status = dev.status if dev else None
    row = ReportRow(
        name=art.name, format=art.format, precision=art.precision, qat=art.qat,
        sparsity=art.sparsity, file=art.file, export_status=art.status,
        device_status=device_status,
        status="ok" if art.ok and device_status in (None, "ok") else "failed",
        reason=art.reason if not art.ok else (dev.reason if dev else None),
        checks={c.name: c.status for c in (dev.checks if dev else ())},
        steps=art.check.steps if art.check is not None else None)
    if art.ok:
        row = _with_export(row, art, float_accuracy, context)
    if dev is not None and dev.ok:
        row = _with_device(row, dev, context)
    health = (comparisons.health(context.samples, row.predictions, context.labels, art.name)
              or comparisons.health(context.device_samples, row.device_predictions,
                                    context.labels, f"{art.name} on the device"))
    return dataclasses.replace(row, health=health)


def _with_export(row: ReportRow, art: ExportArtifact, float_accuracy: float | None,
                 context: _Context) -> ReportRow:
    """``row`` with what export.json measured of a file it exported: size, accuracy on the
    test split with its interval, and the paired comparison with the float model."""
    check = art.check
    predictions = check.predictions if check and _counts(context.samples, check.samples) else None
    work_iv = (comparisons.accuracy_interval(context.samples, predictions)
               or comparisons.interval_of(art.accuracy, check.samples if check else None))
    # an older export.json compared a QAT / pruned file with its own trained model only
    own = check is not None and check.vs_float is not None and (
        row.steps is not None or not (art.qat or art.sparsity is not None))
    vs_float = check.vs_float if check and own else _comparison(
        comparisons.paired_difference(context.samples, context.float_predictions, predictions))
    return dataclasses.replace(
        row, bytes=art.bytes, gzip_bytes=art.gzip_bytes, workstation_accuracy=art.accuracy,
        delta_vs_float=_diff(art.accuracy, float_accuracy), predictions=predictions,
        workstation_interval=_pair(work_iv), vs_float=vs_float)


def _with_device(row: ReportRow, ran: ValidationRow, context: _Context) -> ReportRow:
    """``row`` with what a device that ran the file measured. Its accuracy is held to the
    workstation's on the same sample (the bundle's validation sample), which need not be the
    split export.json measured on."""
    here = _counts(context.device_samples, ran.samples)
    dev_preds = ran.predictions if here else None
    ref_preds = ran.workstation_predictions if here else None
    dev_iv = (comparisons.accuracy_interval(context.device_samples, dev_preds)
              or comparisons.interval_of(ran.accuracy, ran.samples))
    reference = (ran.workstation_accuracy if ran.workstation_accuracy is not None
                 else row.workstation_accuracy)
    agreement = ran.agreement  # emulated devices
    return dataclasses.replace(
        row, device_predictions=dev_preds, reference_predictions=ref_preds,
        device_interval=_pair(dev_iv),
        device_vs_workstation=_comparison(comparisons.paired_difference(
            context.device_samples, ref_preds, dev_preds)),
        device_accuracy=ran.accuracy, device_samples=ran.samples,
        reference_accuracy=ran.workstation_accuracy,
        device_gap=_diff(ran.accuracy, reference),
        latency_p50_ms=_num((ran.latency_ms or {}).get("p50")), fps=ran.throughput_fps,
        peak_memory_mb=ran.peak_memory_mb,
        agreement_top1=agreement.top1 if agreement else None,
        max_abs_diff=agreement.max_abs_diff if agreement else None, latency=ran.latency)


def _with_ratios(rows: list[ReportRow]) -> list[ReportRow]:
    """Size over the same format's plain fp32 artifact (``<format>-fp32``)."""
    fp32 = {r.format: r.bytes for r in rows if r.name == f"{r.format}-fp32"}
    out = []
    for r in rows:
        ref = fp32.get(r.format)
        ratio = round(r.bytes / ref, 4) if r.bytes is not None and ref else None
        out.append(dataclasses.replace(r, ratio_to_fp32=ratio))
    return out


def _confusion_pair(rows: Sequence[ReportRow],
                    device_rows: Mapping[str, ValidationRow]) -> list[tuple[str, Any]]:
    """(float, int8) confusion matrices from the validation JSON, preferring one format."""
    def matrix(name: str) -> Any:
        dev = device_rows.get(name)
        return dev.confusion_matrix if dev is not None and dev.ok else None

    names = [r.name for r in rows]
    for fmt in ("tflite", "onnx"):
        f32, i8 = f"{fmt}-fp32", f"{fmt}-int8"
        if f32 in names and i8 in names and matrix(f32) and matrix(i8):
            return [(f32, matrix(f32)), (i8, matrix(i8))]
    return []


def _write_text(path: Path, text: str) -> None:
    from edge_transfer.core.atomic import write_text_atomic

    write_text_atomic(path, text if text.endswith("\n") else text + "\n")


# ---------------------------------------------------------------- helpers

def _export_path(run_dir: Path, given: str | Path | None) -> Path:
    path = Path(given) if given else run_dir / "export"
    return path / "export.json" if path.is_dir() or not path.suffix else path


def _check_fingerprint(expected: str, got: str | None, path: Path, fix: str) -> None:
    if got and got != expected:
        raise DataError(f"{path} was made from other data than the run (fingerprint {got} != "
                        f"{expected}); {fix}")


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 6)

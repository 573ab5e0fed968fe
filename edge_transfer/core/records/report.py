"""``REPORT/report.json`` (:class:`Report`): one :class:`ReportRow` per artifact (export record
and device measurement side by side), the run's transfer figures and the files beside it;
written by ``report``, compared by ``check``."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_transfer.core.records.base import OMIT_NONE, FileRecord, Record
from edge_transfer.core.records.device import DeviceInfo, LatencyStats, Recommendation
from edge_transfer.core.records.export import TrainedSteps
from edge_transfer.core.records.incremental import IncrementalHistory
from edge_transfer.core.records.paired import Comparison, SampleIds
from edge_transfer.core.records.validation import ClientRow


@dataclass(frozen=True)
class ReportRow(Record):
    """One artifact of a report: export record and device measurement side by side."""

    name: str
    status: str
    format: str | None = None
    precision: str | None = None
    qat: bool = False
    sparsity: float | None = None
    reason: str | None = None
    export_status: str | None = None
    device_status: str | None = None
    file: str | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    ratio_to_fp32: float | None = None
    workstation_accuracy: float | None = None
    device_accuracy: float | None = None
    device_samples: int | None = None
    reference_accuracy: float | None = None
    delta_vs_float: float | None = None
    device_gap: float | None = None
    latency_p50_ms: float | None = None
    fps: float | None = None
    peak_memory_mb: float | None = None
    checks: dict[str, str] = field(default_factory=dict)
    agreement_top1: float | None = None
    max_abs_diff: float | None = None
    # Per-sample figures (issue 12): top-1 per sample of the workstation on the test split
    # (``predictions``), of the device (``device_predictions``) and of the workstation on the
    # device's samples (``reference_predictions``); Wilson 95% intervals (low, high) of the
    # two accuracies; paired comparisons with the float model and device vs workstation;
    # a warning when the file is at chance or predicts one class.
    predictions: str | None = None
    device_predictions: str | None = None
    reference_predictions: str | None = None
    workstation_interval: tuple[float, ...] | None = None
    device_interval: tuple[float, ...] | None = None
    vs_float: Comparison | None = None
    device_vs_workstation: Comparison | None = None
    health: str | None = None
    # A QAT or pruned file: its fine-tune and its conversion, each paired (export.json's)
    steps: TrainedSteps | None = field(default=None, metadata=OMIT_NONE)
    clients: tuple[ClientRow, ...] = ()   # this file in deploy clients (validate --client)
    latency: LatencyStats | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class TransferFigures(Record):
    """A report's ``transfer``: the run's figures from metrics.json (transfer vs scratch on
    the test split, source accuracy before / after), the gain and the forgetting (before -
    after); with both models' test predictions the gain is paired (``transfer_gain_low`` /
    ``_high``: its 95% interval, ``transfer_gain_p``: exact McNemar), else those are absent.
    ``test_samples`` is the test split's size (a float in the files, as it always was)."""

    test_accuracy: float | None = None
    val_accuracy: float | None = None
    scratch_test_accuracy: float | None = None
    source_accuracy_before: float | None = None
    source_accuracy_after: float | None = None
    transfer_gain: float | None = None
    forgetting: float | None = None
    test_samples: float | None = None
    transfer_gain_low: float | None = field(default=None, metadata=OMIT_NONE)
    transfer_gain_high: float | None = field(default=None, metadata=OMIT_NONE)
    transfer_gain_p: float | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class ReportFiles(Record):
    markdown: str = "report.md"
    plot: str | None = "accuracy_vs_size.png"
    confusion: str | None = None
    latency_plots: tuple[str, ...] = ()   # accuracy_vs_latency[_DEVICE].png, one per device


@dataclass(frozen=True)
class Report(FileRecord, file="report.json", version=1,
             make="build it again with `edge-transfer report RUN`"):
    """``REPORT/report.json``: one row per artifact, the figures ``check`` compares."""

    data_fingerprint: str
    artifacts: tuple[ReportRow, ...]
    run: str | None = None
    export: str | None = None
    validation: str | None = None
    labels: tuple[str, ...] = ()
    float_accuracy: float | None = None
    device: DeviceInfo | None = None
    transfer: TransferFigures | None = None
    files: ReportFiles | None = None
    samples: SampleIds | None = None          # the test samples of workstation figures
    device_samples: SampleIds | None = None   # the samples the device ran
    float_predictions: str | None = None
    float_interval: tuple[float, ...] | None = None
    warnings: tuple[str, ...] = ()
    incremental: IncrementalHistory | None = field(default=None, metadata=OMIT_NONE)
    recommendations: tuple[Recommendation, ...] = ()   # one per device validated

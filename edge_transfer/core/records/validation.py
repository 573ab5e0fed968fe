"""What ``edge-transfer validate --json OUT`` writes (:class:`ValidationResult`): one
:class:`ValidationRow` per artifact run on a device (with its budget checks and its agreement
with the workstation) and one :class:`ClientRow` per file run in a deploy client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_transfer.core.errors import DeviceError
from edge_transfer.core.records.base import OMIT_NONE, FileRecord, Record
from edge_transfer.core.records.device import DeviceInfo, DeviceRow, LatencyStats, Recommendation
from edge_transfer.core.records.paired import Comparison, SampleIds


@dataclass(frozen=True)
class BudgetCheck(Record):
    """One budget of a device profile on one artifact: ``pass``, ``fail`` or ``skip``."""

    name: str
    status: str
    value: Any = None
    limit: Any = None
    detail: str | None = None
    emulated: bool | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Agreement(Record):
    """A device's outputs against the workstation's on the same sample."""

    reference: str = "workstation"
    top1: float | None = None
    max_abs_diff: float | None = None
    samples: int = 0
    reference_accuracy: float | None = None
    detail: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class ClientRow(Record):
    """One bundle file run in one deploy client (``validate --client``): ``ok`` (it ran),
    ``disagrees`` (it ran, significantly less accurate than our runtime beyond the bundle's
    tolerance), ``refused`` (the client refused or failed on the file: ``reason`` is its
    message) or ``missing`` (the client is not installed where the validation ran).
    ``agreement``: the share of images whose top-1 label equals our runtime's on the same
    images, with its Wilson 95% interval; ``vs_runtime``: the client's accuracy minus our
    runtime's, paired."""

    artifact: str
    client: str
    status: str
    reason: str | None = None
    version: str | None = None
    samples: int = 0
    agreement: float | None = None
    agreement_low: float | None = None
    agreement_high: float | None = None
    accuracy: float | None = None
    vs_runtime: Comparison | None = None
    predictions: str | None = None       # the client's top-1 per sample (label index)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def cell(self) -> str:
        """A table cell: ``'agrees 99.6% [97.5, 99.9], p=1'`` (p: the paired accuracy
        difference with our runtime), ``'ran (no runtime to compare)'``, or the status.

        >>> ClientRow("tflite-int8", "litert", "refused", "no labels").cell()
        'refused'
        """
        if self.agreement is None and not self.ok:
            return self.status
        if self.agreement is None:
            return "ran (no runtime to compare)"
        from edge_transfer.core.stats import format_p

        p = f", p={format_p(self.vs_runtime.p_value)}" if self.vs_runtime else ""
        verb = "agrees" if self.ok else "DISAGREES:"
        return (f"{verb} {self.agreement * 100:.1f}% [{(self.agreement_low or 0) * 100:.1f}, "
                f"{(self.agreement_high or 0) * 100:.1f}]{p}")


@dataclass(frozen=True)
class ValidationRow(DeviceRow):
    """One artifact run on a device: ``ok``, ``failed`` (with ``reason``) or ``skipped``."""

    file: str | None = None
    bytes: int | None = None
    reason: str | None = None
    samples: int = 0
    accuracy: float | None = None
    workstation_accuracy: float | None = None
    per_class_accuracy: tuple[float | None, ...] | None = None
    confusion_matrix: tuple[tuple[int, ...], ...] | None = None
    latency_ms: dict[str, float] | None = None
    throughput_fps: float | None = None
    peak_memory_mb: float | None = None
    checks: tuple[BudgetCheck, ...] = ()
    emulated: bool | None = field(default=None, metadata=OMIT_NONE)
    agreement: Agreement | None = field(default=None, metadata=OMIT_NONE)
    predictions: str | None = None              # the device's top-1 per sample
    workstation_predictions: str | None = None  # the workstation's, same samples (manifest)
    latency: LatencyStats | None = field(default=None, metadata=OMIT_NONE)  # how, threads

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class ValidationResult(FileRecord, file="validation.json", version=1, error=DeviceError,
                       make="write it again with `edge-transfer validate BUNDLE --json OUT`"):
    """What ``edge-transfer validate --json OUT`` writes."""

    device: DeviceInfo
    bundle: str
    data_fingerprint: str | None
    artifacts: tuple[ValidationRow, ...]
    data: str | None = None
    samples: SampleIds | None = None     # the samples every row ran on
    clients: tuple[ClientRow, ...] = ()  # the files run in deploy clients (--client)
    recommendation: Recommendation | None = field(default=None, metadata=OMIT_NONE)

    def row(self, name: str) -> ValidationRow | None:
        return next((r for r in self.artifacts if r.name == name), None)

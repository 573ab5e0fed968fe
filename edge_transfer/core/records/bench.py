"""What ``edge-transfer bench --json OUT`` writes (:class:`BenchTable`): one :class:`BenchRow`
per artifact (FPS = 1000 / p50 ms at batch 1) and the validation beside."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_transfer.core.errors import DeviceError
from edge_transfer.core.records.base import OMIT_NONE, FileRecord
from edge_transfer.core.records.device import DeviceInfo, DeviceRow, LatencyStats, Recommendation
from edge_transfer.core.records.validation import ValidationResult


@dataclass(frozen=True)
class BenchRow(DeviceRow):
    """One artifact of the benchmark table (FPS = 1000 / p50 ms at batch 1)."""

    size_mb: float
    reason: str | None = None
    samples: int | None = None
    accuracy: float | None = None
    workstation_accuracy: float | None = None
    ms_per_image: float | None = None
    fps: float | None = None
    batched_fps: float | None = None
    emulated: bool = False
    agreement_top1: float | None = None
    latency: LatencyStats | None = field(default=None, metadata=OMIT_NONE)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class BenchTable(FileRecord, file="bench.json", version=1, error=DeviceError,
                 make="write it again with `edge-transfer bench SOURCE --json OUT`"):
    """What ``edge-transfer bench --json OUT`` writes: the rows and the validation beside."""

    source: str
    device: DeviceInfo
    rows: tuple[BenchRow, ...]
    validation: ValidationResult
    data: str | None = None
    min_accuracy: float | None = None
    below_min_accuracy: tuple[str, ...] = ()
    recommendation: Recommendation | None = field(default=None, metadata=OMIT_NONE)

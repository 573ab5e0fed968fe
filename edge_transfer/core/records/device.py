"""What a device measured and chose, in the rows manifest.json, validate --json, report.json
and bench --json share: where a validation ran (:class:`DeviceInfo`), how one file's latency
was measured (:class:`LatencyStats`), which file to deploy (:class:`Recommendation`) and the
fields every row of one file run on a device begins with (:class:`DeviceRow`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_transfer.core.records.base import OMIT_NONE, Record


@dataclass(frozen=True)
class DeviceRow(Record):
    """One file run on a device, as a validation or a benchmark row begins: ``status`` is
    ``ok``, ``failed`` (with the row's ``reason``) or ``skipped``."""

    name: str
    format: str
    precision: str
    status: str


@dataclass(frozen=True)
class DeviceInfo(Record):
    """Where a validation ran."""

    name: str
    profile: str | None = None
    arch: str | None = None
    emulated: bool = False
    host_arch: str | None = field(default=None, metadata=OMIT_NONE)
    runtimes: dict[str, str | None] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class LatencyStats(Record):
    """How one file's latency was measured (:mod:`edge_transfer.core.latency`): one image
    at a time, ``warmup`` untimed runs, then ``runs`` timed: milliseconds at p50 (median),
    p90, p99 and the interquartile range, with the runtime's ``threads``."""

    p50: float
    p90: float
    p99: float
    runs: int
    warmup: int
    iqr: float | None = None
    threads: int | None = None
    batch: int = 1
    q25: float | None = None      # the quartiles the IQR spans
    q75: float | None = None

    def describe(self) -> str:
        """``'0.720 ms median (IQR 0.050) of 100 runs, 5 warm-up, 2 threads'``."""
        from edge_transfer.core.latency import describe_latency

        return describe_latency(self.to_dict())


@dataclass(frozen=True)
class Recommendation(Record):
    """Which file to deploy on one device (:mod:`edge_transfer.deploy.recommend`): within the
    accuracy tolerance of float (paired), within the profile's budgets, fastest measured
    latency, then smallest. ``artifact`` is None when no file qualifies; ``excluded`` says
    why each other file was not chosen; ``trades`` one line per notable trade; ``basis``
    what the latency ranking stood on."""

    device: str
    artifact: str | None
    reason: str
    profile: str | None = None
    emulated: bool = False
    basis: str = ""
    trades: tuple[str, ...] = ()
    excluded: dict[str, str] = field(default_factory=dict)
    ranking: tuple[str, ...] = ()     # the qualifying files, best first

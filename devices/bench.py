"""The benchmark table: one row per artifact (format, status, size, accuracy, ms per image,
FPS), measured by :func:`devices.validate_bundle` on any device, with an accuracy floor.

A source is a bundle, a run directory, an export folder or one model file of one
(:mod:`devices.bench_source` turns it into a bundle).

Not run as a doctest (it needs a run and the emulated device; tests/test_devices.py
benches a run locally):

>>> table = bench("runs/target", device="emulated:arm64")          # doctest: +SKIP
>>> [(r["name"], r["accuracy"], r["ms_per_image"]) for r in table["rows"]]   # doctest: +SKIP
[('tflite-fp32', 0.96, 31.9), ...]
>>> below_floor(table, 0.95)                                          # doctest: +SKIP
['tflite-int8-pruned50 (0.9333)']
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from devices.bench_source import as_bundle
from devices.deploy import read_manifest, recommend_validation
from devices.profile import DeviceProfile, resolve_profile
from devices.validate import validate
from edge_transfer.core.records.base import as_dict
from edge_transfer.core.records.bench import BenchRow, BenchTable
from edge_transfer.core.records.validation import ValidationRow

MB = 1024 * 1024


def bench_table(
    source: str | Path,
    device: str = "local",
    profile: str | Path | DeviceProfile | None = None,
    threads: int | None = None,
    data: str | None = None,
    timeout: float = 1800,
) -> BenchTable:
    """Validate ``source`` on ``device``: the table rows and the validation result beside
    them (:func:`bench` returns the same as a dict)."""
    path = Path(source)
    with tempfile.TemporaryDirectory(prefix="edge-transfer-bench-") as tmp:
        bundle, artifacts = as_bundle(path, Path(tmp))
        result = validate(bundle, device=device, profile=profile, threads=threads,
                          data=data, artifacts=artifacts, timeout=timeout)
        rec = recommend_validation(result, read_manifest(bundle), resolve_profile(profile))
    result = dataclasses.replace(result, bundle=str(source), recommendation=rec)
    return BenchTable(source=str(source), device=result.device, data=data,
                      rows=tuple(bench_row(r) for r in result.artifacts), validation=result,
                      recommendation=rec)


bench = as_dict(bench_table)


def bench_row(row: ValidationRow) -> BenchRow:
    """One validation row as a benchmark row; FPS is 1000 / ms per image (p50, batch of 1),
    ``batched_fps`` the throughput of the batched pass."""
    ran = row.ok
    p50 = row.latency_ms["p50"] if ran and row.latency_ms else None
    return BenchRow(name=row.name, format=row.format, precision=row.precision,
                    status=row.status, reason=row.reason, size_mb=(row.bytes or 0) / MB,
                    samples=row.samples if ran else None,
                    accuracy=row.accuracy if ran else None,
                    workstation_accuracy=row.workstation_accuracy,
                    ms_per_image=p50, fps=1000.0 / p50 if p50 else None,
                    batched_fps=row.throughput_fps if ran else None,
                    emulated=bool(row.emulated),
                    agreement_top1=row.agreement.top1 if row.agreement else None,
                    latency=row.latency if ran else None)


def below_floor(table: BenchTable | dict[str, Any], min_accuracy: float) -> list[str]:
    """``name (accuracy)`` of every row that ran below ``min_accuracy`` or failed to run;
    rows the device profile skips are not counted."""
    rows = table.rows if isinstance(table, BenchTable) else [
        BenchRow.from_dict(r) for r in table["rows"]]
    out = []
    for row in rows:
        if row.status == "failed":
            out.append(f"{row.name} (failed)")
        elif row.ok and row.accuracy is not None and row.accuracy < min_accuracy:
            out.append(f"{row.name} ({row.accuracy:.4f})")
    return out

"""The benchmark table: one row per artifact (format, status, size, accuracy, ms per image,
FPS), measured by :func:`devices.validate_bundle` on any device, with an accuracy floor.

A source is a bundle (folder or ``.tar.gz``), a run directory (its ``RUN/export`` is bundled
into a temporary folder: the sample is the run's test split, as in ``edge-transfer bundle``),
an export folder (``export.json``), or one model file inside an export folder.

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

from devices.profile import DeviceProfile
from devices.validate import validate
from edge_transfer.bundle import MANIFEST, create_bundle
from edge_transfer.errors import BenchSourceError
from edge_transfer.records import BenchRow, BenchTable, ExportRecord, ValidationRow, as_dict

MB = 1024 * 1024
MODEL_SUFFIXES = (".tflite", ".onnx")


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
        bundle, artifacts = _as_bundle(path, Path(tmp))
        result = validate(bundle, device=device, profile=profile, threads=threads,
                          data=data, artifacts=artifacts, timeout=timeout)
    result = dataclasses.replace(result, bundle=str(source))
    return BenchTable(source=str(source), device=result.device, data=data,
                      rows=tuple(bench_row(r) for r in result.artifacts), validation=result)


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
                    agreement_top1=row.agreement.top1 if row.agreement else None)


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


def _as_bundle(path: Path, tmp: Path) -> tuple[Path, list[str]]:
    """(bundle folder or archive, artifact names to run: all when empty)."""
    if path.is_file() and path.name.endswith(".tar.gz"):
        return path, []
    if path.is_dir() and (path / MANIFEST).is_file():
        return path, []
    if path.is_dir() and (path / "run.json").is_file():
        export_dir = path / "export"
        if not (export_dir / ExportRecord.FILE_NAME).is_file():
            raise BenchSourceError(f"{path} has no export ({export_dir}/export.json): run "
                                   f"`edge-transfer export {path}` first")
        return create_bundle(path, tmp / "bundle", export_dir=export_dir), []
    if path.is_dir() and (path / ExportRecord.FILE_NAME).is_file():
        return create_bundle(_run_of(path), tmp / "bundle", export_dir=path), []
    if path.is_file() and path.suffix in MODEL_SUFFIXES:
        export_dir = path.parent
        if not (export_dir / ExportRecord.FILE_NAME).is_file():
            raise BenchSourceError(
                f"{path} has no export.json beside it, so there is no labelled sample to "
                "measure accuracy on: bench its run, export folder or bundle instead")
        export = _export_of(export_dir)
        names = [a.name for a in export.ok_artifacts if a.file == path.name]
        if not names:
            raise BenchSourceError(f"{path.name} is not a status-ok artifact of "
                                   f"{export_dir}/export.json; export the run again")
        return create_bundle(_run_of(export_dir), tmp / "bundle", export_dir=export_dir), names
    if not path.exists():
        raise BenchSourceError(f"{path} does not exist; give a run directory, an export "
                               "folder, a .tflite/.onnx file of one, or a bundle")
    raise BenchSourceError(f"{path} is not a run (run.json), an export folder (export.json), "
                           "a bundle (manifest.json or .tar.gz) or a .tflite/.onnx model")


def _export_of(export_dir: Path) -> ExportRecord:
    return ExportRecord.load(export_dir / ExportRecord.FILE_NAME, error=BenchSourceError)


def _run_of(export_dir: Path) -> Path:
    run = Path(_export_of(export_dir).run or "")
    if not (run / "run.json").is_file():
        raise BenchSourceError(f"{export_dir}/export.json names run {str(run)!r}, which is "
                               "not there; bench the bundle of the run instead")
    return run

"""What ``edge-transfer bench`` measures, as a bundle: a source is a bundle (folder or
``.tar.gz``), a run directory (its ``RUN/export`` is bundled into a temporary folder: the
sample is a stratified sample of the run's test split, as in ``edge-transfer bundle``), an
export folder
(``export.json``), or one model file inside an export folder (only that artifact runs).

>>> as_bundle(Path("no-such-run"), Path("."))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
edge_transfer.core.errors.BenchSourceError: no-such-run does not exist; give a run directory, ...
"""

from __future__ import annotations

from pathlib import Path

from edge_transfer.core.errors import BenchSourceError
from edge_transfer.core.records.export import ExportRecord
from edge_transfer.core.records.run import RunInfo
from edge_transfer.deploy.bundle import MANIFEST, create_bundle

MODEL_SUFFIXES = (".tflite", ".onnx")


def as_bundle(path: Path, tmp: Path) -> tuple[Path, list[str]]:
    """(bundle folder or archive, artifact names to run: all when empty)."""
    if path.is_file() and path.name.endswith(".tar.gz"):
        return path, []
    if path.is_dir() and (path / MANIFEST).is_file():
        return path, []
    if path.is_dir() and (path / RunInfo.FILE_NAME).is_file():
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
    if not (run / RunInfo.FILE_NAME).is_file():
        raise BenchSourceError(f"{export_dir}/export.json names run {str(run)!r}, which is "
                               "not there; bench the bundle of the run instead")
    return run

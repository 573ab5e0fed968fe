"""Deploy bundles: the exported models of a run, checksummed, with a validation sample.

    BUNDLE/manifest.json     schema_version, labels, preprocessing, data_fingerprint,
                             tolerance, validation_sample (+ its sha256), artifacts
                             [{name, file, format, precision, sha256, bytes,
                               workstation_accuracy, export_accuracy}]
    BUNDLE/<model files>     the status-ok artifacts of RUN/export/export.json
    BUNDLE/validation.npz    the run's test split: x uint8 raw pixels, y labels, class_names

``workstation_accuracy`` is each artifact's accuracy on validation.npz measured here with
:mod:`edge_transfer.runtime`, so a device that runs the same sample must reproduce it
within ``tolerance``. :func:`open_bundle` checks every sha256 before anything runs, and
unpacks a ``.tar.gz`` only when no entry leaves the folder. No TensorFlow needed.

>>> folder = create_bundle("runs/target", "bundles/target")      # doctest: +SKIP
>>> archive = create_bundle("runs/target", "bundles/target", tar=True)   # doctest: +SKIP
>>> bundle = open_bundle(archive)                                 # doctest: +SKIP
>>> [a.name for a in bundle.artifacts]                            # doctest: +SKIP
['tflite-fp32', 'tflite-int8', 'onnx-fp32', 'onnx-int8']
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edge_transfer.errors import BundleError, UserError
from edge_transfer.images import Images
from edge_transfer.preprocessing import Preprocessing
from edge_transfer.runs import write_json

SCHEMA_VERSION = 1
EXPORT_SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
VALIDATION_SAMPLE = "validation.npz"
DEFAULT_TOLERANCE = 0.005
FORMATS = ("tflite", "onnx")
SAMPLE_BATCH = 512  # images read, checked and written at a time


@dataclass(frozen=True)
class BundleArtifact:
    name: str
    file: str
    format: str
    precision: str
    sha256: str
    bytes: int
    workstation_accuracy: float | None


@dataclass(frozen=True)
class Bundle:
    """An opened, verified bundle folder."""

    path: Path
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    data_fingerprint: str
    tolerance: float
    artifacts: tuple[BundleArtifact, ...]
    validation_sample: str

    def artifact_path(self, artifact: BundleArtifact) -> Path:
        return self.path / artifact.file

    def artifact(self, name: str) -> BundleArtifact:
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        known = ", ".join(a.name for a in self.artifacts)
        raise BundleError(f"the bundle has no artifact {name!r}; it has {known}")

    def validation_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The validation sample: uint8 raw pixels (N, H, W, C) and integer labels."""
        with np.load(self.path / self.validation_sample, allow_pickle=False) as data:
            return data["x"], data["y"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- create


def create_bundle(
    run_dir: str | Path,
    out_dir: str | Path,
    export_dir: str | Path | None = None,
    tar: bool = False,
) -> Path:
    """Bundle the status-ok artifacts of ``RUN/export/export.json``; the folder, or its .tar.gz.

    ``out_dir`` must be empty, missing, or an older bundle (which is replaced).
    """
    from edge_transfer.runs import Run

    run = Run.open(run_dir)
    export_dir = Path(export_dir) if export_dir else run.path / "export"
    export = _read_export(export_dir)
    if export.get("data_fingerprint") not in (None, run.data_fingerprint):
        raise BundleError(
            f"{export_dir} was exported from other data ({export['data_fingerprint']}) than "
            f"{run.path} ({run.data_fingerprint}); export the run again"
        )
    artifacts = [a for a in export.get("artifacts", []) if a.get("status") == "ok"]
    if not artifacts:
        raise BundleError(f"{export_dir}/export.json has no artifact with status ok; "
                          "fix the export (see its reasons) and export again")
    test = run.splits.test
    out = Path(out_dir)
    _check_out_dir(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=_parent(out)))
    try:
        entries = [_copy_artifact(export_dir, a, staging) for a in artifacts]
        for entry in entries:
            entry["workstation_accuracy"] = _accuracy(staging / entry["file"], test.x, test.y)
        tmp = staging / f".{VALIDATION_SAMPLE}.tmp.npz"
        write_sample(tmp, test.x, test.y, run.labels)
        tmp.replace(staging / VALIDATION_SAMPLE)
        write_json(staging / MANIFEST, {
            "schema_version": SCHEMA_VERSION,
            "run": str(run.path),
            "labels": list(run.labels),
            "preprocessing": run.preprocessing.to_dict(),
            "data_fingerprint": run.data_fingerprint,
            "tolerance": DEFAULT_TOLERANCE,
            "validation_sample": VALIDATION_SAMPLE,
            "validation_sha256": sha256_file(staging / VALIDATION_SAMPLE),
            "artifacts": entries,
        })
        if out.exists():  # a previous bundle (checked by _check_out_dir): swap, then delete
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.replace(old)
            staging.replace(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return archive_bundle(out) if tar else out


def archive_bundle(folder: str | Path) -> Path:
    """``FOLDER.tar.gz`` beside the bundle folder, entries under ``FOLDER.name/``."""
    folder = Path(folder)
    open_bundle(folder)  # never archive a bundle that does not verify
    target = folder.with_name(folder.name + ".tar.gz")
    tmp = target.with_name(f".{target.name}.tmp")
    with tarfile.open(tmp, "w:gz") as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=f"{folder.name}/{path.name}", recursive=False)
    tmp.replace(target)
    return target


def _read_export(export_dir: Path) -> dict[str, Any]:
    path = export_dir / "export.json"
    if not path.is_file():
        raise BundleError(f"{path} is missing; run `edge-transfer export RUN` first")
    try:
        export = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}; export the run again") from exc
    if export.get("schema_version") != EXPORT_SCHEMA_VERSION:
        raise BundleError(
            f"{path} has schema_version {export.get('schema_version')!r}; this edge-transfer "
            f"reads {EXPORT_SCHEMA_VERSION}: export again with this version"
        )
    return export


def _copy_artifact(export_dir: Path, artifact: dict[str, Any], staging: Path) -> dict[str, Any]:
    name, file = artifact.get("name"), artifact.get("file")
    if not file or not _plain_name(file):
        raise BundleError(f"artifact {name}: file {file!r} is not a file name in {export_dir}; "
                          "export the run again")
    if artifact.get("format") not in FORMATS:
        raise BundleError(f"artifact {name}: unknown format {artifact.get('format')!r}")
    source = export_dir / file
    if not source.is_file():
        raise BundleError(f"artifact {name}: {source} is missing; export the run again")
    digest = sha256_file(source)
    if artifact.get("sha256") and artifact["sha256"] != digest:
        raise BundleError(f"{source} changed since export.json was written (sha256 mismatch); "
                          "export the run again")
    tmp = staging / f".{file}.tmp"
    shutil.copyfile(source, tmp)
    tmp.replace(staging / file)
    return {"name": name, "file": file, "format": artifact["format"],
            "precision": artifact.get("precision"), "sha256": digest,
            "bytes": source.stat().st_size, "export_accuracy": artifact.get("accuracy")}


def _accuracy(path: Path, x: Images, y: np.ndarray) -> float:
    """Top-1 accuracy of a model file on raw images, read a batch at a time."""
    from edge_transfer.runtime import EdgeModel

    model = EdgeModel.load(path)
    hits = sum(int(np.sum(model.predict(batch).indices == y[start:start + len(batch)]))
               for start, batch in zip(range(0, len(x), SAMPLE_BATCH), x.batches(SAMPLE_BATCH),
                                       strict=True))
    return hits / len(y) if len(y) else float("nan")


def write_sample(path: Path, x: Images, y: np.ndarray, labels: Sequence[str]) -> None:
    """The validation sample as a compressed .npz (``x`` uint8, ``y``, ``class_names``),
    ``x`` written a batch at a time (what ``np.savez_compressed`` would write)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {
                "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                "fortran_order": False, "shape": tuple(x.shape)})
            for batch in x.batches(SAMPLE_BATCH):
                member.write(np.ascontiguousarray(batch, np.uint8).tobytes())
        for name, array in (("y", y.astype(np.int64)),
                            ("class_names", np.array(labels, dtype=str))):
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _check_out_dir(out: Path) -> None:
    if out.is_file():
        raise BundleError(f"{out} is a file; give a folder for the bundle")
    if out.is_dir() and any(out.iterdir()) and not _is_bundle(out):
        raise BundleError(f"{out} is not empty and not an edge-transfer bundle; give an empty "
                          "or new folder (an existing bundle is replaced)")


def _is_bundle(folder: Path) -> bool:
    """An edge-transfer bundle, judged by its manifest, not by a file name alone."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"schema_version", "artifacts",
                                           "validation_sample"} <= manifest.keys()


def _parent(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent


def _plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name


# --------------------------------------------------------------------------- open


def open_bundle(path: str | Path, extract_to: str | Path | None = None) -> Bundle:
    """Open a bundle folder or ``.tar.gz`` and verify every file's sha256.

    An archive is unpacked into ``extract_to`` (default: a new temporary folder, left for
    the caller) after every entry was checked to stay inside it.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path} does not exist; create it with `edge-transfer bundle RUN --out`")
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz")):
            raise BundleError(f"{path} is neither a bundle folder nor a .tar.gz bundle")
        dest = Path(extract_to) if extract_to else Path(tempfile.mkdtemp(prefix="bundle-"))
        try:
            return _verify(_extract(path, dest))
        except BaseException:
            if not extract_to:  # ours: a refused archive leaves nothing behind
                shutil.rmtree(dest, ignore_errors=True)
            raise
    return _verify(path)


def _extract(archive: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, root)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # Python without extraction filters: the checks above are the guard
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BundleError(f"{archive} is not a readable .tar.gz ({exc}); copy it again") from exc
    if (dest / MANIFEST).is_file():
        return dest
    folders = [p for p in dest.iterdir() if (p / MANIFEST).is_file()]
    if len(folders) != 1:
        raise BundleError(f"{archive} holds no single bundle ({MANIFEST} not found); "
                          "create it with `edge-transfer bundle RUN --out DIR --tar`")
    return folders[0]


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    name = member.name
    parts = PurePosixPath(name).parts
    target = (root / name).resolve()
    if name.startswith(("/", "\\")) or ".." in parts or not target.is_relative_to(root):
        raise BundleError(f"refusing archive entry {name!r}: it leaves the bundle folder; "
                          "this archive was not made by `edge-transfer bundle`, do not use it")
    if not (member.isfile() or member.isdir()):
        raise BundleError(f"refusing archive entry {name!r}: only files and folders are allowed "
                          "(no links or devices); recreate the bundle with `edge-transfer bundle`")


def _verify(folder: Path) -> Bundle:
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{folder} has no {MANIFEST}; it is not a bundle, create one with "
                          "`edge-transfer bundle RUN --out DIR`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc}; copy the bundle again") from exc
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path} has schema_version {version!r}; this edge-transfer reads "
            f"{SCHEMA_VERSION}: install the edge-transfer version that made the bundle"
        )
    try:
        sample = str(manifest["validation_sample"])
        _check_file(folder, sample, manifest["validation_sha256"], "validation sample")
        artifacts = tuple(
            BundleArtifact(name=str(a["name"]), file=str(a["file"]), format=str(a["format"]),
                           precision=str(a["precision"]), sha256=str(a["sha256"]),
                           bytes=int(a["bytes"]),
                           workstation_accuracy=a.get("workstation_accuracy"))
            for a in manifest["artifacts"]
        )
        for artifact in artifacts:
            _check_file(folder, artifact.file, artifact.sha256, f"artifact {artifact.name}")
        return Bundle(
            path=folder, labels=tuple(manifest["labels"]),
            preprocessing=Preprocessing.from_dict(manifest["preprocessing"]),
            data_fingerprint=str(manifest["data_fingerprint"]),
            tolerance=float(manifest["tolerance"]), artifacts=artifacts,
            validation_sample=sample,
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, UserError) as exc:
        raise BundleError(f"{manifest_path} is malformed ({type(exc).__name__}: {exc}); "
                          "create the bundle again") from exc


def _check_file(folder: Path, name: str, expected: str, what: str) -> None:
    if not _plain_name(name):
        raise BundleError(f"{what}: {name!r} is not a plain file name; refusing this bundle")
    path = folder / name
    if not path.is_file():
        raise BundleError(f"{what}: {path} is missing; copy the whole bundle again")
    if sha256_file(path) != expected:
        raise BundleError(f"{what}: {path} does not match its sha256 in {MANIFEST} (damaged or "
                          "modified); copy the bundle again, nothing was run")

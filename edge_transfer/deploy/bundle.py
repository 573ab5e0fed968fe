"""Deploy bundles: the exported models of a run, checksummed, with a validation sample.

    BUNDLE/manifest.json     schema_version, labels, preprocessing, data_fingerprint,
                             tolerance, validation_sample (+ its sha256), samples (which
                             samples: positions in the run's test split), split_samples,
                             float_predictions, artifacts
                             [{name, file, format, precision, sha256, bytes,
                               workstation_accuracy, workstation_predictions,
                               predictions_from, export_accuracy}],
                             and with ``--for PROFILE``: profile, left_out, recommendation
    BUNDLE/<model files>     the status-ok artifacts of RUN/export/export.json
    BUNDLE/validation.npz    a stratified sample of the run's test split (default 1,568
                             images, enough to resolve the 0.5-pt tolerance; ``--samples
                             all``: the whole split): x uint8 raw pixels, y, class_names

``workstation_accuracy`` is each artifact's accuracy on validation.npz
(``workstation_predictions``: its top-1 per sample), taken from export.json's check of the
same file on the same test images when it can be (``predictions_from: "export.json"``), else
measured here with :mod:`edge_transfer.runtime` (``"bundle"``); a device that runs the same
sample is compared with it pair by pair, and with the float model (``float_predictions``).
:func:`open_bundle` checks every sha256 before anything runs, and unpacks a ``.tar.gz`` only
when no entry leaves the folder. No TensorFlow needed.

Not run as a doctest (it needs an exported run; tests/test_bundle.py bundles one):

>>> folder = create_bundle("runs/target", "bundles/target")      # doctest: +SKIP
>>> archive = create_bundle("runs/target", "bundles/target", tar=True)   # doctest: +SKIP
>>> bundle = open_bundle(archive)                                 # doctest: +SKIP
>>> [a.name for a in bundle.manifest.artifacts]                  # doctest: +SKIP
['tflite-fp32', 'tflite-int8', 'onnx-fp32', 'onnx-int8']
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from edge_transfer.core.atomic import atomic_path
from edge_transfer.core.errors import BundleError, UserError
from edge_transfer.core.records.export import ExportArtifact, ExportRecord
from edge_transfer.core.records.manifest import Manifest, ManifestArtifact
from edge_transfer.core.records.paired import SampleIds
from edge_transfer.data.images import Images
from edge_transfer.deploy.measure import float_top1, workstation_top1
from edge_transfer.deploy.sample import default_samples, stratified_positions

if TYPE_CHECKING:
    from edge_transfer.train.runs import Run

MANIFEST = Manifest.FILE_NAME
VALIDATION_SAMPLE = "validation.npz"
DEFAULT_TOLERANCE = 0.005
SAMPLE_BATCH = 512  # images read, checked and written at a time
DEFAULT_SAMPLES = default_samples(DEFAULT_TOLERANCE)  # 1,568: resolves a 0.5-pt drop

BundleArtifact = ManifestArtifact
"""One model file of a bundle (its row in ``manifest.json``)."""


@dataclass(frozen=True)
class Bundle:
    """An opened, verified bundle folder and its manifest."""

    path: Path
    manifest: Manifest

    def artifact_path(self, artifact: BundleArtifact) -> Path:
        return self.path / artifact.file

    def artifact(self, name: str) -> BundleArtifact:
        for artifact in self.manifest.artifacts:
            if artifact.name == name:
                return artifact
        known = ", ".join(a.name for a in self.manifest.artifacts)
        raise BundleError(f"the bundle has no artifact {name!r}; it has {known}")

    def validation_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The validation sample: uint8 raw pixels (N, H, W, C) and integer labels."""
        with np.load(self.path / self.manifest.validation_sample, allow_pickle=False) as data:
            return data["x"], data["y"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- create


Select = Callable[[ManifestArtifact], str | None]   # why to leave a file out, or None
Mark = Callable[[Manifest, Path], Manifest]   # the manifest with the file to deploy marked


@dataclass(frozen=True)
class BundleOptions:
    """What goes into a bundle beyond the run's status-ok files.

    ``samples``: test images in the validation sample (stratified; None: the whole split);
    ``select``: why a file is left out (``bundle --for PROFILE``), or None to keep it;
    ``mark``: the manifest with the file to deploy marked, given the staged bundle folder;
    ``profile``: the profile's name recorded in the manifest; ``progress``: one line per
    step (which predictions were reused, which measured).
    """

    samples: int | None = DEFAULT_SAMPLES
    select: Select | None = None
    mark: Mark | None = None
    profile: str | None = None
    progress: Callable[[str], None] | None = None


def create_bundle(
    run_dir: str | Path,
    out_dir: str | Path,
    export_dir: str | Path | None = None,
    tar: bool = False,
    options: BundleOptions | None = None,
) -> Path:
    """Bundle the status-ok artifacts of ``RUN/export/export.json``; the folder, or its .tar.gz.

    ``out_dir`` must be empty, missing, or an older bundle (which is replaced). The sample is
    a stratified subset of the test split (``options.samples``, default
    :data:`DEFAULT_SAMPLES`); each file's predictions on it are export.json's when they are
    this file's on these samples (:mod:`edge_transfer.deploy.measure`), else measured here.
    """
    from edge_transfer.train.runs import Run

    options = options or BundleOptions()
    run = Run.open(run_dir)
    export_dir = Path(export_dir) if export_dir else run.path / "export"
    export = _export_of(run, export_dir)
    sample = _Sample.of(run, options.samples)
    out = Path(out_dir)
    _check_out_dir(out)
    previous = _previous(out, sample.ids)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=_parent(out)))
    try:
        _stage(staging, run, export, export_dir, sample, options, previous)
        _replace(out, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return archive_bundle(out) if tar else out


@dataclass(frozen=True)
class _Sample:
    """The bundle's validation sample: ``positions`` in the run's test split (``split``),
    their images and labels, and their identity (``ids``)."""

    split: SampleIds
    ids: SampleIds
    positions: np.ndarray
    x: Images
    y: np.ndarray

    @classmethod
    def of(cls, run: Run, samples: int | None) -> _Sample:
        """A stratified sample of ``samples`` test images of ``run`` (None: all of them)."""
        test = run.splits.test
        positions = stratified_positions(test.y, samples)
        y = np.asarray(test.y)[positions]
        return cls(split=SampleIds.of(run.data_fingerprint, "test", test.y),
                   ids=SampleIds.of(run.data_fingerprint, "test", y, positions),
                   positions=positions, x=test.x[positions], y=y)


def _stage(staging: Path, run: Run, export: ExportRecord, export_dir: Path, sample: _Sample,
           options: BundleOptions, previous: dict[tuple[str, str], ManifestArtifact]) -> None:
    """Write the bundle into ``staging``: the files, each with the workstation's top-1 on the
    sample (the replaced bundle's, export.json's or measured), the sample, the manifest."""
    entries, left_out = _stage_artifacts(
        export, export_dir, staging, options,
        lambda e, a: _again(previous, e, options.progress) or _measured(
            e, a, staging, export, sample.split, sample.x, sample.positions, options.progress))
    with atomic_path(staging / VALIDATION_SAMPLE, keep_suffix=True) as tmp:
        write_sample(tmp, sample.x, sample.y, run.labels)
    manifest = Manifest(
        run=str(run.path), labels=run.labels, preprocessing=run.preprocessing,
        data_fingerprint=run.data_fingerprint, tolerance=DEFAULT_TOLERANCE,
        validation_sample=VALIDATION_SAMPLE,
        validation_sha256=sha256_file(staging / VALIDATION_SAMPLE),
        artifacts=tuple(entries),
        samples=sample.ids, split_samples=sample.split.count,
        float_predictions=float_top1(export, sample.split, sample.positions),
        profile=options.profile, left_out=left_out)
    if options.mark is not None:
        manifest = options.mark(manifest, staging)
    manifest.dump(staging / MANIFEST)


def _previous(out: Path, ids: SampleIds) -> dict[tuple[str, str], ManifestArtifact]:
    """The rows of the bundle ``out`` replaces that measured a file on these very samples
    (export.json's could not be reused for it): not measured again."""
    if not (out / MANIFEST).is_file() or not _is_bundle(out):
        return {}
    old = Manifest.load(out / MANIFEST)
    if not ids.same_samples(old.samples):
        return {}
    return {(a.name, a.sha256): dataclasses.replace(a, latency=None) for a in old.artifacts
            if a.predictions_from == "bundle" and a.workstation_predictions}


def _again(previous: dict[tuple[str, str], ManifestArtifact], entry: ManifestArtifact,
           progress: Callable[[str], None] | None) -> ManifestArtifact | None:
    """The previous bundle's row of this very file, said so; None if there is none."""
    row = previous.get((entry.name, entry.sha256))
    if row is not None and progress:
        progress(f"{entry.name}: reused the replaced bundle's predictions (measured there on "
                 "the same images, same file)")
    return row


def _export_of(run: Run, export_dir: Path) -> ExportRecord:
    export = ExportRecord.load(export_dir / ExportRecord.FILE_NAME, error=BundleError,
                               missing="run `edge-transfer export RUN` first")
    if export.data_fingerprint not in (None, run.data_fingerprint):
        raise BundleError(
            f"{export_dir} was exported from other data ({export.data_fingerprint}) than "
            f"{run.path} ({run.data_fingerprint}); export the run again"
        )
    if not export.ok_artifacts:
        raise BundleError(f"{export_dir}/export.json has no artifact with status ok; "
                          "fix the export (see its reasons) and export again")
    return export


def _stage_artifacts(
    export: ExportRecord, export_dir: Path, staging: Path, options: BundleOptions,
    measure: Callable[[ManifestArtifact, ExportArtifact], ManifestArtifact],
) -> tuple[list[ManifestArtifact], dict[str, str]]:
    """Copy and measure the files ``options.select`` keeps; (entries, {left out: why})."""
    entries, left_out = [], {}
    for artifact in export.ok_artifacts:
        entry = _described(export_dir, artifact)
        why = options.select(entry) if options.select else None
        if why:
            left_out[artifact.name] = why
            continue
        entries.append(measure(_copy_artifact(export_dir, staging, entry), artifact))
    if not entries:
        raise BundleError(f"no exported file is left for {options.profile or 'the device'}: "
                          + "; ".join(f"{k}: {v}" for k, v in left_out.items())
                          + "; export a format and precision it runs")
    return entries, left_out


def _replace(out: Path, staging: Path) -> None:
    """``staging`` becomes ``out``; a previous bundle there is swapped out, then deleted."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.replace(old)
        staging.replace(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.replace(out)


def archive_bundle(folder: str | Path) -> Path:
    """``FOLDER.tar.gz`` beside the bundle folder, entries under ``FOLDER.name/``."""
    folder = Path(folder)
    open_bundle(folder)  # never archive a bundle that does not verify
    target = folder.with_name(folder.name + ".tar.gz")
    with atomic_path(target) as tmp, tarfile.open(tmp, "w:gz") as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=f"{folder.name}/{path.name}", recursive=False)
    return target


def _described(export_dir: Path, artifact: ExportArtifact) -> ManifestArtifact:
    """The manifest row of an export.json artifact, its sha256 checked against the file."""
    from edge_transfer.runtime.model import FORMATS

    name, file = artifact.name, artifact.file
    if not file or not _plain_name(file):
        raise BundleError(f"artifact {name}: file {file!r} is not a file name in {export_dir}; "
                          "export the run again")
    if artifact.format not in FORMATS.values():
        raise BundleError(f"artifact {name}: unknown format {artifact.format!r}")
    source = export_dir / file
    if not source.is_file():
        raise BundleError(f"artifact {name}: {source} is missing; export the run again")
    digest = sha256_file(source)
    if artifact.sha256 and artifact.sha256 != digest:
        raise BundleError(f"{source} changed since export.json was written (sha256 mismatch); "
                          "export the run again")
    return ManifestArtifact(name=name, file=file, format=artifact.format,
                            precision=artifact.precision, sha256=digest,
                            bytes=source.stat().st_size, export_accuracy=artifact.accuracy,
                            kept_float=tuple(artifact.kept_float or ()))


def _copy_artifact(export_dir: Path, staging: Path, entry: ManifestArtifact
                   ) -> ManifestArtifact:
    with atomic_path(staging / entry.file) as tmp:
        shutil.copyfile(export_dir / entry.file, tmp)
    return entry


def _measured(entry: ManifestArtifact, artifact: ExportArtifact, staging: Path,
              export: ExportRecord, test_ids: SampleIds, x: Images, positions: np.ndarray,
              progress: Callable[[str], None] | None) -> ManifestArtifact:
    """The entry with the workstation's accuracy and top-1 per sample on the bundle's sample
    (export.json's when they are this file's, else measured here: see
    :mod:`edge_transfer.deploy.measure`)."""
    from edge_transfer.core.samples import encode

    got = workstation_top1(staging / entry.file, artifact, entry.sha256, export, test_ids, x,
                           positions)
    if progress:
        progress(f"{entry.name}: {got.note}")
    y = test_ids.label_array()[positions]
    return dataclasses.replace(entry, workstation_accuracy=float(np.mean(got.predictions == y)),
                               workstation_predictions=encode(got.predictions),
                               predictions_from=got.source)


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
        Manifest.load(folder / MANIFEST)
    except UserError:
        return False
    return True


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
    manifest = Manifest.load(manifest_path, fix="copy the bundle again, or create it again "
                             "with the edge-transfer version that reads it")
    _check_file(folder, manifest.validation_sample, manifest.validation_sha256,
                "validation sample")
    for artifact in manifest.artifacts:
        _check_file(folder, artifact.file, artifact.sha256, f"artifact {artifact.name}")
    return Bundle(path=folder, manifest=manifest)


def _check_file(folder: Path, name: str, expected: str, what: str) -> None:
    if not _plain_name(name):
        raise BundleError(f"{what}: {name!r} is not a plain file name; refusing this bundle")
    path = folder / name
    if not path.is_file():
        raise BundleError(f"{what}: {path} is missing; copy the whole bundle again")
    if sha256_file(path) != expected:
        raise BundleError(f"{what}: {path} does not match its sha256 in {MANIFEST} (damaged or "
                          "modified); copy the bundle again, nothing was run")

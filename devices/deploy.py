"""Which file to deploy on a device: from a validation result (``validate``, ``bench``,
``report``), and for a bundle made for one profile (``bundle --for PROFILE``).

The rule is :func:`edge_transfer.deploy.recommend.recommend`'s; here the device's rows become its
candidates, the float model's predictions on the same images (the bundle's manifest) its
reference, and a profile its budgets.

``bundle --for PROFILE`` ships only what that device runs (its formats and precisions; fully
int8 files only on a device without float fallback; no file over its storage budget) and
marks the recommended file in the manifest. On a profile of this machine's architecture the
latency is measured here, the same way validate measures it; on another architecture nothing
is timed and the mark is the smallest file within the tolerance, saying so.

>>> from devices.profile import load_profile
>>> from edge_transfer.core.records.manifest import ManifestArtifact
>>> row = ManifestArtifact(name="onnx-fp32", file="model.onnx", format="onnx",
...                        precision="fp32", sha256="0" * 64, bytes=1000)
>>> left_out_because(load_profile("coral-dev-board"), row)
'coral-dev-board does not run onnx models (runs tflite)'
"""

from __future__ import annotations

import dataclasses
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from devices.profile import DeviceProfile, machine_arch
from edge_transfer.core.errors import UserError
from edge_transfer.core.records.base import MalformedRecord
from edge_transfer.core.records.device import LatencyStats, Recommendation
from edge_transfer.core.records.manifest import Manifest, ManifestArtifact
from edge_transfer.core.records.validation import ValidationResult
from edge_transfer.deploy.bundle import DEFAULT_SAMPLES, MANIFEST, BundleOptions
from edge_transfer.deploy.recommend import Candidate, correct, recommend, recommend_result

MB = 1024 * 1024
DEFAULT_TOLERANCE = 0.005


# --------------------------------------------------------------------------- validate


def recommend_validation(result: ValidationResult, manifest: Manifest | None,
                         profile: DeviceProfile | None) -> Recommendation:
    """The file to deploy on the device ``result`` was measured on; the float model's
    predictions come from the manifest when the device ran the bundle's own sample."""
    same = (manifest is not None and result.samples is not None
            and result.samples.same_samples(manifest.samples))
    return recommend_result(result, manifest.float_predictions if same and manifest else None,
                            _tolerance(profile, manifest))


def with_recommendation(result: dict[str, Any], bundle: str | Path,
                        profile: DeviceProfile | None) -> dict[str, Any]:
    """The validation JSON with its ``recommendation`` (for the CLI's dict results)."""
    record = ValidationResult.from_dict(result)
    rec = recommend_validation(record, read_manifest(bundle), profile)
    return {**result, "recommendation": rec.to_dict()}


def read_manifest(bundle: str | Path) -> Manifest | None:
    """A bundle's manifest (folder or .tar.gz) without unpacking it; None if unreadable."""
    path = Path(bundle)
    try:
        if path.is_dir():
            return Manifest.load(path / MANIFEST)
        with tarfile.open(path, "r:gz") as archive:
            for member in archive.getmembers():
                if member.isfile() and Path(member.name).name == MANIFEST:
                    f = archive.extractfile(member)
                    return Manifest.from_dict(json.load(f)) if f else None
    except (UserError, MalformedRecord, OSError, tarfile.TarError, ValueError):
        return None
    return None


def _correct(predictions: str | None, labels: np.ndarray | None) -> np.ndarray | None:
    return correct(predictions, labels)


def _tolerance(profile: DeviceProfile | None, manifest: Manifest | None) -> float:
    if profile is not None and profile.accuracy_tolerance is not None:
        return profile.accuracy_tolerance
    return manifest.tolerance if manifest is not None else DEFAULT_TOLERANCE


# --------------------------------------------------------------------------- bundle --for


def bundle_options_for(profile: DeviceProfile, samples: int | None = DEFAULT_SAMPLES,
                       progress: Callable[[str], None] | None = None) -> BundleOptions:
    """:class:`BundleOptions` that keep what ``profile`` runs and mark the file to deploy."""
    return BundleOptions(samples=samples, profile=profile.name,
                         select=lambda entry: left_out_because(profile, entry),
                         mark=lambda manifest, folder: mark_recommended(profile, manifest,
                                                                        folder),
                         progress=progress)


def left_out_because(profile: DeviceProfile, entry: ManifestArtifact) -> str | None:
    """Why ``profile``'s device cannot use this file (see the module), or None."""
    why = profile.cannot_run(entry.format, entry.precision, entry.kept_float)
    if why is None and entry.bytes / MB > profile.storage_mb:
        why = (f"{entry.bytes / MB:.1f} MB is over {profile.name}'s storage budget of "
               f"{profile.storage_mb:g} MB")
    return why


def mark_recommended(profile: DeviceProfile, manifest: Manifest, folder: Path) -> Manifest:
    """The manifest with each file's latency (measured here when this machine is of the
    profile's architecture) and the recommended file."""
    with np.load(folder / manifest.validation_sample, allow_pickle=False) as data:
        x, y = data["x"], data["y"]
    timed = machine_arch() == profile.arch
    entries = tuple(_timed(a, folder, x, profile.threads) if timed else a
                    for a in manifest.artifacts)
    files = [Candidate(a.name, a.format, a.precision, a.bytes,
                       a.latency.p50 if a.latency else None,
                       _correct(a.workstation_predictions, y),
                       over_budget=("latency",) if a.latency and
                       a.latency.p90 > profile.latency_budget_ms else ())
             for a in entries]
    rec = recommend(files, _correct(manifest.float_predictions, y),
                    _tolerance(profile, manifest),
                    device=f"this workstation ({machine_arch()})" if timed else profile.name,
                    profile=profile.name)
    if not timed:
        rec = dataclasses.replace(rec, basis=f"not timed: this machine is {machine_arch()}, "
                                  f"{profile.name} is {profile.arch}; the smallest file within "
                                  "the tolerance. `edge-transfer validate` on the device "
                                  "ranks by its measured latency")
    return dataclasses.replace(manifest, artifacts=entries, recommendation=rec)


def _timed(entry: ManifestArtifact, folder: Path, x: np.ndarray, threads: int
           ) -> ManifestArtifact:
    from edge_transfer.runtime import EdgeModel

    model = EdgeModel.load(folder / entry.file, threads=threads)
    return dataclasses.replace(entry, latency=LatencyStats.from_dict(model.latency(x[:100])))

"""One artifact of a bundle evaluated in this process -> its validation row with the budget
checks (what ``--device self`` runs, and each child of ``--device local``).

>>> from edge_transfer.deploy.bundle import BundleArtifact
>>> artifact = BundleArtifact(name="onnx-fp16", format="onnx", precision="fp16",
...                           file="model_fp16.onnx", sha256="0" * 64, bytes=1)
>>> row = skipped_row(artifact, "the profile runs int8 only")
>>> row.status, [c.status for c in row.checks]
('skipped', ['skip', 'skip', 'skip', 'skip'])
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from devices.checks import budget_checks, skipped
from devices.profile import DeviceProfile, machine_arch
from devices.sample import validation_data
from edge_transfer.core import interrupts
from edge_transfer.core.atomic import write_bytes_atomic
from edge_transfer.core.errors import UserError
from edge_transfer.core.records.validation import ValidationRow
from edge_transfer.deploy.bundle import Bundle, BundleArtifact


def failed_row(artifact: BundleArtifact, reason: str | None = None) -> ValidationRow:
    """The row of an artifact that did not run (``failed``, with ``reason``)."""
    return ValidationRow(name=artifact.name, format=artifact.format,
                         precision=artifact.precision, file=artifact.file, status="failed",
                         reason=reason, bytes=artifact.bytes,
                         workstation_accuracy=artifact.workstation_accuracy,
                         workstation_predictions=artifact.workstation_predictions)


def skipped_row(artifact: BundleArtifact, reason: str) -> ValidationRow:
    """The row of an artifact the device profile does not run: every budget skipped."""
    return dataclasses.replace(failed_row(artifact, reason), status="skipped",
                               checks=skipped(reason))


def cannot_run(profile: DeviceProfile | None, artifact: BundleArtifact) -> str | None:
    """Why the profile's device does not run ``artifact`` (None: it does, or no profile)."""
    return (profile.cannot_run(artifact.format, artifact.precision, artifact.kept_float)
            if profile else None)


def validate_here(
    bundle: Bundle, artifact: BundleArtifact, profile: DeviceProfile | None,
    threads: int | None, data: str | None, outputs: str | Path | None = None,
) -> ValidationRow:
    """Load and evaluate one artifact in this process."""
    from edge_transfer.runtime import EdgeModel

    reason = cannot_run(profile, artifact)
    if reason:
        return skipped_row(artifact, reason)
    x, y = validation_data(bundle, data)
    try:
        model = EdgeModel.load(bundle.artifact_path(artifact),
                               threads=threads or (profile.threads if profile else None))
        evaluation = model.evaluate(x, y)
        if outputs is not None:
            _save_outputs(Path(outputs) / f"{artifact.name}.npy",
                          model.predict(x).probabilities)
    except UserError as exc:
        interrupts.check(exc)   # a runtime interrupted by a signal is not a failed row
        return failed_row(artifact, str(exc))
    row = ValidationRow.from_dict({**failed_row(artifact).to_dict(), **evaluation.to_dict(),
                                   "status": "ok"})
    if data is not None:  # other samples than the workstation's predictions were made on
        row = dataclasses.replace(row, workstation_predictions=None)
    tolerance = bundle.manifest.tolerance
    if profile and profile.accuracy_tolerance is not None:
        tolerance = profile.accuracy_tolerance
    emulated = bool(profile and profile.arch != machine_arch())
    other_data = (f"validated on {data}, not the bundle's validation sample the workstation "
                  "accuracy was measured on") if data else None
    return dataclasses.replace(
        row, checks=budget_checks(row, profile, tolerance, emulated, other_data))


def _save_outputs(path: Path, outputs: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(outputs, dtype=np.float32))
    write_bytes_atomic(path, buffer.getvalue())

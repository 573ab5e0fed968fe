"""``BUNDLE/manifest.json`` (:class:`Manifest`): what a bundle holds, one
:class:`ManifestArtifact` per model file with its sha256 and the workstation's accuracies;
written by ``bundle``, read by ``validate`` on the device."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_transfer.core.errors import BundleError
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records.base import OMIT_NONE, FileRecord, Record
from edge_transfer.core.records.device import LatencyStats, Recommendation
from edge_transfer.core.records.paired import SampleIds


@dataclass(frozen=True)
class ManifestArtifact(Record):
    """One model file of a bundle, with the accuracies the workstation measured."""

    name: str
    file: str
    format: str
    precision: str
    sha256: str
    bytes: int
    workstation_accuracy: float | None = None   # on the bundle's validation sample
    export_accuracy: float | None = None        # export.json's (the run's test split)
    workstation_predictions: str | None = None  # top-1 per sample of the validation sample
    kept_float: tuple[str, ...] = ()            # int8-mixed: layers left in float
    # where workstation_predictions came from: "export.json" (the export's check, reused)
    # or "bundle" (measured when the bundle was made)
    predictions_from: str | None = field(default=None, metadata=OMIT_NONE)
    latency: LatencyStats | None = field(default=None, metadata=OMIT_NONE)  # bundle --for


@dataclass(frozen=True)
class Manifest(FileRecord, file="manifest.json", version=1, error=BundleError,
               make="create the bundle again (`edge-transfer bundle RUN --out DIR`)"):
    """``BUNDLE/manifest.json``: what a bundle holds, with every file's sha256."""

    labels: tuple[str, ...]
    preprocessing: Preprocessing
    data_fingerprint: str
    tolerance: float
    validation_sample: str
    validation_sha256: str
    artifacts: tuple[ManifestArtifact, ...]
    run: str | None = None
    samples: SampleIds | None = None    # the validation sample: positions in the test split
    # issue 25: the sample is a stratified subset of ``split_samples`` test images (or all);
    # the float model's top-1 on it (to judge each file against float, paired); and, for
    # ``bundle --for PROFILE``, the profile, what it left out and the recommended file.
    split_samples: int | None = field(default=None, metadata=OMIT_NONE)
    float_predictions: str | None = field(default=None, metadata=OMIT_NONE)
    profile: str | None = field(default=None, metadata=OMIT_NONE)
    left_out: dict[str, str] = field(default_factory=dict)
    recommendation: Recommendation | None = field(default=None, metadata=OMIT_NONE)

    @property
    def recommended(self) -> str | None:
        """The artifact name ``bundle --for`` marked as the one to deploy, or None."""
        return self.recommendation.artifact if self.recommendation else None

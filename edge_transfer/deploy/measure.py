"""The workstation's top-1 per sample of each bundled file: measured once.

``export`` already ran every file over the whole test split and stored its top-1 per sample
in export.json (``check.predictions``). A file whose sha256 is the one export.json records,
checked on the very samples of the run's test split (data fingerprint, split, positions,
labels), is not run again: its predictions at the bundle's positions are taken from there,
after a spot check (``SPOT_CHECK`` images of the sample run here must give the same top-1;
if one differs, the whole sample is measured). Anything else is measured here, and the
reason is said.

Not run as a doctest (it needs an exported run; tests/test_bundle.py bundles one):

>>> got = workstation_top1(path, artifact, digest, export, test_ids, x, positions)  # doctest: +SKIP
>>> got.source, got.note                                                            # doctest: +SKIP
('export.json', "reused export.json's predictions (32 spot-checked images agree)")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_transfer.core.records.export import ExportArtifact, ExportRecord
from edge_transfer.core.records.paired import SampleIds
from edge_transfer.core.samples import SamplesError
from edge_transfer.data.images import Images

SPOT_CHECK = 32
BATCH = 512


@dataclass(frozen=True)
class Measured:
    """One file's top-1 on the bundle's sample, where it came from and one line saying so."""

    predictions: np.ndarray
    source: str          # "export.json" (reused) or "bundle" (measured here)
    note: str


def workstation_top1(path: Path, artifact: ExportArtifact, digest: str, export: ExportRecord,
                     test_ids: SampleIds, x: Images, positions: np.ndarray) -> Measured:
    """The file's top-1 on ``x`` (the test split's images at ``positions``)."""
    from edge_transfer.runtime import EdgeModel

    reused, why = export_top1(artifact, digest, export, test_ids)
    model = EdgeModel.load(path)
    if reused is not None:
        top1 = reused[positions]
        spot = np.unique(np.linspace(0, len(x) - 1, min(SPOT_CHECK, len(x))).astype(int))
        here = model.predict(x.read(spot)).indices
        differ = int(np.sum(here != top1[spot]))
        if not differ:
            return Measured(top1, "export.json", f"reused export.json's predictions "
                                                 f"({len(spot)} spot-checked images agree)")
        why = (f"this runtime's top-1 differs from export.json's on {differ} of {len(spot)} "
               "spot-checked images")
    top1 = np.concatenate([model.predict(batch).indices for batch in x.batches(BATCH)])
    return Measured(top1, "bundle", f"measured here on {len(x):,} images: {why}")


def export_top1(artifact: ExportArtifact, digest: str, export: ExportRecord,
                test_ids: SampleIds) -> tuple[np.ndarray | None, str]:
    """export.json's top-1 over the whole test split for this very file, or (None, why not)."""
    from edge_transfer.core.samples import decode

    check = artifact.check
    if artifact.sha256 != digest:
        return None, "the file's sha256 is not the one export.json records"
    if check is None or check.predictions is None:
        return None, "export.json has no per-sample predictions for it"
    if export.samples is None or not export.samples.same_samples(test_ids):
        return None, "export.json's check ran on other samples than the run's test split"
    try:
        top1 = decode(check.predictions)
    except SamplesError:
        return None, "export.json's predictions for it are damaged"
    if top1.size != test_ids.count:
        return None, (f"export.json holds {top1.size} predictions for {test_ids.count} "
                      "test images")
    return top1, ""


def float_top1(export: ExportRecord, test_ids: SampleIds, positions: np.ndarray
               ) -> str | None:
    """The float (Keras) model's top-1 at ``positions``, encoded, when export.json has it
    for the run's test split; else None."""
    from edge_transfer.core.samples import decode, encode

    if export.float_predictions is None or export.samples is None \
            or not export.samples.same_samples(test_ids):
        return None
    try:
        top1 = decode(export.float_predictions)
    except SamplesError:
        return None
    return encode(top1[positions]) if top1.size == test_ids.count else None

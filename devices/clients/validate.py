"""``validate --client``: after our runtime validated a bundle on this machine, run the same
files on the same images in the deploy clients and add their rows to the result.

Not run as a doctest (it needs a bundle and the clients; tests/test_clients.py runs both):

>>> result = with_clients(validate("bundle/"), "bundle/", ["mediapipe"])   # doctest: +SKIP
>>> [(r.artifact, r.client, r.status, r.agreement) for r in result.clients]  # doctest: +SKIP
[('tflite-fp32', 'mediapipe', 'ok', 1.0), ...]
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from devices.clients.run import run_clients
from devices.sample import validation_data
from edge_transfer.core.records.validation import ValidationResult, ValidationRow
from edge_transfer.core.samples import SamplesError, decode
from edge_transfer.deploy.bundle import open_bundle


def with_clients(
    result: ValidationResult, bundle_dir: str | Path, clients: Sequence[str],
    data: str | None = None, python: str | None = None, timeout: float = 600,
    progress: Callable[[str], None] | None = None,
) -> ValidationResult:
    """``result`` with a row per (file, client): the files ``result`` validated, on the
    images it validated them on, compared with its rows' top-1 predictions."""
    if not clients:
        return result
    with tempfile.TemporaryDirectory(prefix="edge-transfer-") as tmp:
        bundle = open_bundle(bundle_dir, extract_to=tmp)
        x, y = validation_data(bundle, data)
        ours = {row.name: _top1(row, len(y)) for row in result.artifacts}
        names = [row.name for row in result.artifacts if row.status != "skipped"]
        rows = run_clients(bundle, names, clients, x, y, ours, python, timeout, progress)
    return dataclasses.replace(result, clients=result.clients + rows)


def _top1(row: ValidationRow, samples: int) -> np.ndarray | None:
    """Our runtime's top-1 per image of a row that ran on all ``samples`` images."""
    if not row.ok or row.predictions is None:
        return None
    try:
        top1 = decode(row.predictions)
    except SamplesError:
        return None
    return top1 if len(top1) == samples else None

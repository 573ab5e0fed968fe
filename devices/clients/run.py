"""Run a bundle's files in deploy clients and compare each client's top-1 with our runtime's
on the same images: one :class:`~edge_transfer.core.records.ClientRow` per (file, client).

>>> row = client_row("tflite-int8", "litert", Outcome("ok", labels=("a", "b", "b", "a")),
...                  labels=("a", "b"), y=np.array([0, 1, 1, 1]), ours=np.array([0, 1, 1, 0]))
>>> row.status, row.agreement, row.accuracy, row.vs_runtime.describe()
('ok', 1.0, 0.75, '+0.0 pt [-42.7, +42.7], p=1 (lost 0, gained 0 of 4)')
>>> client_row("onnx-fp32", "openvino", Outcome("refused", "no model_type"), ("a",),
...            np.array([0]), None).reason
'no model_type'
>>> y = np.arange(300) % 2
>>> half = client_row("onnx-int8", "openvino", Outcome("ok", labels=("a",) * 300), ("a", "b"),
...                   y, ours=y, tolerance=0.01)
>>> half.status, half.agreement, half.reason[:40]
('disagrees', 0.5, 'accuracy -50.0 pt [-55.6, -44.2], p=<0.0')
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devices.clients import CLIENTS, Client, clients_python
from edge_transfer.core import stats
from edge_transfer.core.preprocessing import as_uint8_batch, resize_batch
from edge_transfer.core.records.paired import Comparison
from edge_transfer.core.records.validation import ClientRow
from edge_transfer.core.samples import encode
from edge_transfer.deploy.bundle import Bundle

MISSING, REFUSED = 3, 4   # the scripts' exit codes (scripts/_protocol.py)


@dataclass(frozen=True)
class Outcome:
    """What a client script said: ``ok`` with a label per image, ``refused`` or ``missing``
    with the reason."""

    status: str
    reason: str | None = None
    labels: tuple[str, ...] = ()
    version: str | None = None


def run_client(client: Client, model: Path, images: Path, python: str | None = None,
               timeout: float = 600) -> Outcome:
    """``python scripts/client_NAME.py MODEL IMAGES.npy OUT.json``: the client's own API on
    the file; a crash, a hang or a missing interpreter is a ``refused`` outcome with why."""
    python = python or clients_python()
    with tempfile.TemporaryDirectory(prefix="edge-transfer-client-") as tmp:
        out = Path(tmp) / "out.json"
        try:
            proc = subprocess.run([python, str(client.script), str(model), str(images),
                                   str(out)], capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            return Outcome("missing", f"no Python at {python}: set the clients' Python with "
                                      "EDGE_TRANSFER_CLIENTS_PYTHON or --client-python")
        except subprocess.TimeoutExpired:
            return Outcome("refused", f"{client.name} did not finish within {timeout:g} s")
        said = json.loads(out.read_text()) if out.exists() else {}
    if proc.returncode == MISSING:
        return Outcome("missing", f"{said.get('missing')}: {client.install}")
    if proc.returncode == REFUSED:
        return Outcome("refused", said.get("refused"))
    if proc.returncode != 0 or "labels" not in said:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return Outcome("refused", f"{client.name} crashed (exit {proc.returncode}): {tail}")
    return Outcome("ok", labels=tuple(said["labels"]), version=said.get("version"))


def client_row(artifact: str, client: str, outcome: Outcome, labels: Sequence[str],
               y: np.ndarray, ours: np.ndarray | None,
               tolerance: float | None = None) -> ClientRow:
    """The row of one outcome: agreement with our runtime's top-1 ``ours`` (None when our
    runtime did not run the file) and the paired accuracy difference, on labels ``y``. A
    client less accurate than our runtime by more than ``tolerance`` and significantly
    (:func:`edge_transfer.core.stats.decide`) ``disagrees``."""
    if outcome.status != "ok":
        return ClientRow(artifact, client, outcome.status, outcome.reason, outcome.version)
    # ONNX's model_info labels are split on white space: "tabby cat" travels as "tabby_cat"
    index = {**{"_".join(label.split()): i for i, label in enumerate(labels)},
             **{label: i for i, label in enumerate(labels)}}
    top1 = np.array([index.get(label, -1) for label in outcome.labels], dtype=np.int64)
    unknown = sorted({label for label in outcome.labels if label not in index})
    reason = (f"labels not among the bundle's: {', '.join(unknown[:5])}" if unknown else None)
    row = ClientRow(artifact, client, "ok", reason, outcome.version, samples=len(top1),
                    accuracy=float(np.mean(top1 == y)),
                    predictions=encode(np.maximum(top1, 0)))
    if ours is None or len(ours) != len(top1):
        return row
    agree = stats.accuracy_interval(top1 == ours)
    paired = stats.paired(ours == y, top1 == y)
    row = dataclasses.replace(row, agreement=agree.estimate, agreement_low=agree.low,
                              agreement_high=agree.high, vs_runtime=Comparison.of(paired))
    if tolerance is None:
        return row
    decision = stats.decide(paired, tolerance)
    if decision.verdict == "pass":
        return row
    return dataclasses.replace(row, status="disagrees", reason=(
        f"accuracy {paired.describe()} against our runtime on the same images: "
        f"{decision.reason} ({tolerance * 100:.1f} pt)"))


def rgb_images(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, height, width, 3) uint8: the images as a photo decodes (a gray image as R = G = B),
    at the model's input size (resized as our runtime resizes them, so that both see the
    same pixels: a client that resizes by itself, or not at all, is not what is measured).

    >>> rgb_images(np.zeros((2, 8, 8, 1), np.uint8), 16, 16).shape
    (2, 16, 16, 3)
    """
    x = as_uint8_batch(x)
    if x.shape[1:3] != (height, width):
        x = resize_batch(x, height, width)
    if x.ndim == 3:
        x = x[..., None]
    return np.ascontiguousarray(np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x)


def run_clients(
    bundle: Bundle, artifacts: Sequence[str], clients: Sequence[str], x: np.ndarray,
    y: np.ndarray, ours: dict[str, np.ndarray | None], python: str | None = None,
    timeout: float = 600, progress: Callable[[str], None] | None = None,
) -> tuple[ClientRow, ...]:
    """Every file of ``artifacts`` in every client of ``clients`` that reads its format."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-transfer-clients-") as tmp:
        images = Path(tmp) / "images.npy"
        pre = bundle.manifest.preprocessing
        np.save(images, rgb_images(x, pre.height, pre.width))
        for name in artifacts:
            artifact = bundle.artifact(name)
            for client in (CLIENTS[c] for c in clients):
                if artifact.format not in client.formats:
                    continue
                if progress:
                    progress(f"{artifact.name} in {client.name} ({len(y)} images)")
                outcome = run_client(client, bundle.artifact_path(artifact), images, python,
                                     timeout)
                rows.append(client_row(artifact.name, client.name, outcome, bundle.manifest.labels,
                                       np.asarray(y), ours.get(artifact.name),
                                       bundle.manifest.tolerance))
    return tuple(rows)

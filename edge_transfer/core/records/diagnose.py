"""``RUN/export/diagnose.json`` (:class:`DiagnoseRecord`): every diagnosis of
``edge-transfer diagnose``, one format and precision each, layers ranked worst first."""

from __future__ import annotations

from dataclasses import dataclass

from edge_transfer.core.errors import ExportError
from edge_transfer.core.records.base import FileRecord, Record


@dataclass(frozen=True)
class LayerDiagnosis(Record):
    """One Keras layer's quantization error (relative RMS), with the nodes it became."""

    layer: str
    op_type: str
    depth: int
    local: float          # error the layer adds itself, given quantized inputs
    cumulative: float     # error built up by its output against the float model
    reading: str
    nodes: tuple[str, ...] = ()
    weights: int = 0      # weight values its ops hold (float costs ~3 bytes more per value)


@dataclass(frozen=True)
class Diagnosis(Record):
    """One format and precision diagnosed: layers ranked worst first."""

    run: str
    format: str
    precision: str
    samples: int
    float_accuracy: float
    quantized_accuracy: float
    seconds: float
    layers: tuple[LayerDiagnosis, ...]
    plot: str | None = None
    by_depth: tuple[str, ...] = ()    # layer names in graph order
    # what the errors' shape says (edge_transfer.export.quant_signs)
    signs: tuple[str, ...] = ()


@dataclass(frozen=True)
class DiagnoseRecord(FileRecord, file="diagnose.json", version=1, error=ExportError,
                     make="run `edge-transfer diagnose RUN` again"):
    """``RUN/export/diagnose.json``: every diagnosis of ``edge-transfer diagnose``."""

    diagnoses: tuple[Diagnosis, ...] = ()

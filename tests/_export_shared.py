"""The exports the tests share, each computed once per test session.

:func:`export_post_training` (every post-training precision of every format, no QAT, no
pruning: seconds on the small CNN) serves the fast tests; :func:`export_all` adds QAT and
pruning, which train the model again, and serves only tests marked ``slow``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import exporters
from edge_transfer.core import stats
from edge_transfer.core.samples import decode
from edge_transfer.export.config import ExportConfig
from edge_transfer.export.pipeline import ExportResult, export_run
from exporters import Artifact

# Every post-training variant the exporters can produce.
POST_TRAINING = ExportConfig(
    formats=("tflite", "onnx"),
    precisions=("fp32", "fp16", "dynamic", "int8", "int16x8"),
    calibration_samples=64,
)
# ... and QAT and pruning on top: the whole export.
ALL_VARIANTS = ExportConfig(**{**POST_TRAINING.__dict__, "qat": True, "prune": 0.5,
                               "prune_precisions": ("fp32", "int8")})


def trained_again(variant: str) -> bool:
    """Whether a variant name (``int8-qat``, ``fp32-pruned50``) needs QAT or pruning.

    >>> [trained_again(v) for v in ("int8", "int8-qat", "fp32-pruned50")]
    [False, True, True]
    """
    return "-qat" in variant or "-pruned" in variant


@cache
def export_post_training(run_dir: Path) -> ExportResult:
    """``POST_TRAINING`` of ``run_dir``, into ``run_dir/export-post-training``, once."""
    out = run_dir / "export-post-training"
    return export_run(run_dir, ExportConfig(**{**POST_TRAINING.__dict__, "out": out}))


@cache
def export_all(run_dir: Path) -> ExportResult:
    """``ALL_VARIANTS`` of ``run_dir``, into ``run_dir/export-all``, once (slow tests only)."""
    out = run_dir / "export-all"
    return export_run(run_dir, ExportConfig(**{**ALL_VARIANTS.__dict__, "out": out}))


@cache
def export_integer_io(run_dir: Path, io: str) -> ExportResult:
    """TFLite int8 with ``io`` (int8 or uint8) input and output, into
    ``run_dir/export-io-IO``, once (the export and the runtime tests share it)."""
    return export_run(run_dir, ExportConfig(formats=("tflite",), precisions=("int8",), io=io,
                                            calibration_samples=64,
                                            out=run_dir / f"export-io-{io}"))


def export_holding(run_dir: Path, variant: str) -> ExportResult:
    """The shared export that holds ``variant``: the post-training one where it can."""
    return (export_all if trained_again(variant) else export_post_training)(run_dir)


def exported_and_rerun(run_dir: Path, fmt: str,
                       variant: str) -> tuple[ExportResult, Artifact, np.ndarray, np.ndarray]:
    """The held export's ``fmt-variant`` file, asserted ``ok`` and passed its check, then
    run on the test split in its own runtime, whose accuracy must be the record's: the
    result, the artifact, the probabilities and the labels."""
    from edge_transfer.train.runs import Run

    result = export_holding(run_dir, variant)
    artifact = result.get(f"{fmt}-{variant}")
    assert artifact.status == "ok", artifact.reason
    assert artifact.check is not None and artifact.check.passed
    x, y = Run.open(result.run).split_arrays("test")
    probabilities = exporters.get(fmt).predict(artifact.path, x)
    assert np.mean(probabilities.argmax(1) == y) == pytest.approx(artifact.accuracy)
    return result, artifact, probabilities, y


def variant_params(variants: list[str]) -> list[Any]:
    """``variants`` for ``pytest.mark.parametrize``, those that train again marked ``slow``."""
    return [pytest.param(v, marks=pytest.mark.slow) if trained_again(v) else v
            for v in variants]


def weight_bytes(path: Path) -> int:
    """Bytes of the constant tensors (the weights) of a .tflite: metadata buffers excluded."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    used = {graph.Tensors(i).Buffer() for i in range(graph.TensorsLength())}
    return sum(model.Buffers(b).DataLength() for b in used if b > 0)


def paired(result: ExportResult, before: str, after: str) -> stats.Paired:
    """``after`` against ``before``, paired on the export check's test samples."""
    assert result.samples is not None
    labels = result.samples.label_array()
    a, b = (decode(result.get(name).check.predictions) == labels for name in (before, after))
    return stats.paired(a, b)

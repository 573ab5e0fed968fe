"""Expensive exports shared by the export test modules (computed once per test session)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from edge_transfer.export import ExportConfig, ExportResult, export_run

# Every variant the exporters can produce, QAT and pruning included.
ALL_VARIANTS = ExportConfig(
    formats=("tflite", "onnx"),
    precisions=("fp32", "fp16", "dynamic", "int8", "int16x8"),
    qat=True,
    prune=0.5,
    prune_precisions=("fp32", "int8"),
    calibration_samples=64,
)


@cache
def export_all(run_dir: Path) -> ExportResult:
    """``ALL_VARIANTS`` of ``run_dir``, into ``run_dir/export-all``, once per session."""
    out = run_dir / "export-all"
    return export_run(run_dir, ExportConfig(**{**ALL_VARIANTS.__dict__, "out_dir": out}))


def weight_bytes(path: Path) -> int:
    """Bytes of the constant tensors (the weights) of a .tflite: metadata buffers excluded."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    used = {graph.Tensors(i).Buffer() for i in range(graph.TensorsLength())}
    return sum(model.Buffers(b).DataLength() for b in used if b > 0)

"""Every keras.applications family through the chain at its smallest input (slow).

By default a fixed sample of families runs (CI budget: a few minutes on 2 cores); set
``EDGE_TRANSFER_FAMILIES=all`` (or a comma-separated list of backbone names) to run one
smallest model of every family. ``benchmarks/backbones.py`` is the full sweep.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _families import chosen

from edge_transfer.train import backbones

# Grouped convolutions (ONNX path), a plain depthwise net, hard-swish + SE.
SAMPLE = ("regnetx_002", "mobilenet_v1", "mobilenet_v3_small")


@pytest.mark.slow
@pytest.mark.parametrize("name", chosen("EDGE_TRANSFER_FAMILIES", SAMPLE))
def test_family_trains_and_exports_or_says_why(name: str, tmp_path: Path) -> None:
    from edge_transfer.report.support import probe

    row = probe(name, tmp_path, epochs=1, qat=False)
    assert row["input_size"] == backbones.get(name).min_size
    assert row["train"]["status"] == "ok", row["train"]
    variants = row["variants"]
    assert set(variants) == {"tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8"}
    for variant, result in variants.items():
        if result["status"] == "ok":
            assert result["accuracy"] is not None and result["seconds"] is not None, variant
        else:   # a specific reason: which variant, and what (op, node or accuracy) went wrong
            reason = result["reason"] or ""
            assert len(reason) > 20 and "unknown" not in reason, (variant, reason)
    for variant in ("tflite-fp32", "onnx-fp32"):   # float always converts for these families
        assert variants[variant]["status"] == "ok", (variant, variants[variant]["reason"])

"""The next step a failed variant's message names: one that works for this model, never one
this export already saw fail.

>>> from exporters import Artifact, ExportSpec
>>> int8 = Artifact("tflite", ExportSpec.int8(), status="failed")
>>> qat = Artifact("tflite", ExportSpec.int8().with_qat(), status="failed")
>>> step = next_step(int8, [int8, qat], "runs/t")  # QAT failed here: not advised again
>>> step.startswith("run `edge-transfer diagnose runs/t --format tflite`"), "qat" in step
(True, False)
>>> mixed = Artifact("tflite", ExportSpec.int8().mixed(("conv2",)), status="ok")
>>> next_step(int8, [int8, mixed], "runs/t")
'use tflite-int8-mixed (conv2 kept in float), which passed'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from exporters import Artifact


def _same_format(artifacts: Sequence[Artifact], fmt: str) -> list[Artifact]:
    return [a for a in artifacts if a.format == fmt]


def next_step(failed: Artifact, artifacts: Sequence[Artifact], run: str | Path) -> str:
    """What to do about ``failed``, given every variant of the same export."""
    mine = _same_format(artifacts, failed.format)
    mixed = [a for a in mine if a.spec.keep_float is not None]
    qat = [a for a in mine if a.spec.qat]
    passed = [a for a in mixed + qat if a.ok and a is not failed]
    if passed and failed.spec.keep_float is None and not failed.spec.qat:
        best = passed[0]
        kept = (f" ({', '.join(best.spec.keep_float)} kept in float)"
                if best.spec.keep_float else "")
        return f"use {best.name}{kept}, which passed"
    steps = []
    if failed.spec.keep_float is not None:
        steps.append("keep more layers in float (--keep-float-conversions, or name them "
                     "after `edge-transfer diagnose`)")
    elif not mixed:
        steps.append(f"run `edge-transfer diagnose {run} --format {failed.format}` to see "
                     "which layers break, then export with --keep-float auto")
    if failed.spec.qat:
        steps.append("fine-tune QAT longer (--epochs)")
    elif not qat:
        steps.append("try --qat")
    if not steps:
        steps.append("export fp16 or dynamic, which keep activations in float")
    return "; or ".join(steps)

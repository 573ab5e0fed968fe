"""The next step a failed variant's message names: one that works for this model, never one
this export already saw fail, nor one that cannot help (a QAT file at chance is a broken
conversion: more QAT epochs do not fix it).

>>> from exporters import Artifact, ExportSpec
>>> int8 = Artifact("tflite", ExportSpec.int8(), status="failed")
>>> qat = Artifact("tflite", ExportSpec.int8().with_qat(), status="failed")
>>> step = next_step(int8, [int8, qat], "runs/t")  # QAT failed here: not advised again
>>> step.startswith("run `edge-transfer diagnose runs/t --format tflite`"), "qat" in step
(True, False)
>>> mixed = Artifact("tflite", ExportSpec.int8().mixed(("conv2",)), status="ok")
>>> next_step(int8, [int8, mixed], "runs/t")
'use tflite-int8-mixed (conv2 kept in float), which passed'
>>> next_step(qat, [qat, Artifact("tflite", ExportSpec.int8(), status="ok")], "runs/t")
'use tflite-int8 (post-training int8), which passed'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge_transfer.core import stats
from edge_transfer.core.samples import decode_or_none
from exporters import Artifact


def _same_format(artifacts: Sequence[Artifact], fmt: str) -> list[Artifact]:
    return [a for a in artifacts if a.format == fmt]


def _post_training(artifact: Artifact) -> bool:
    """Plain post-training int8 (:attr:`~exporters.ExportSpec.post_training`)."""
    return artifact.spec.precision == "int8" and artifact.spec.post_training


def broken(artifact: Artifact, classes: int | None) -> str | None:
    """How ``artifact``'s check shows a broken model, or None: :func:`stats.health_warning`
    (at chance, or one class for nearly every sample) of its check, a state more training of
    the same file does not fix.

    >>> from exporters import ExportSpec
    >>> from edge_transfer.core.records.export import ExportCheck
    >>> from edge_transfer.core.samples import encode
    >>> check = ExportCheck(samples=100, max_abs_diff=0.9, top1_agreement=0.2, accuracy=0.2,
    ...                     tolerance=0.01, passed=False, predictions=encode([4] * 100))
    >>> broken(Artifact("tflite", ExportSpec.int8(), status="failed", check=check), 5)
    'tflite-int8 is at chance: accuracy 20.0 [13.3, 28.9] contains 1/5 = 20.0'
    """
    check = artifact.check
    if check is None:
        return None
    return stats.health_of(check.accuracy, check.samples, classes or 0,
                           decode_or_none(check.predictions), what=artifact.name)


def _conversion_lost(artifact: Artifact) -> bool:
    """Whether the conversion of a QAT / pruned model lost more than its fine-tune did
    (:class:`~edge_transfer.core.records.TrainedSteps`; False when unknown)."""
    steps = artifact.check.steps if artifact.check is not None else None
    return steps is not None and steps.conversion.difference < steps.fine_tune.difference


def next_step(failed: Artifact, artifacts: Sequence[Artifact], run: str | Path,
              classes: int | None = None) -> str:
    """What to do about ``failed``, given every variant of the same export (``classes``:
    how many the model has, to tell a model at chance)."""
    mine = _same_format(artifacts, failed.format)
    mixed = [a for a in mine if a.spec.keep_float is not None]
    qat = [a for a in mine if a.spec.qat]
    ptq = [a for a in mine if _post_training(a)] if failed.spec.qat else []
    passed = [a for a in ptq + mixed + qat if a.ok and a is not failed]
    if passed and failed.spec.keep_float is None:
        best = passed[0]
        kept = (f" ({', '.join(best.spec.keep_float)} kept in float)" if best.spec.keep_float
                else " (post-training int8)" if _post_training(best) else "")
        return f"use {best.name}{kept}, which passed"
    steps = []
    if failed.spec.keep_float is not None:
        search = failed.keep_float_search
        bound = {"max_bytes": "--keep-float-max-bytes larger, ",
                 "conversions": "--keep-float-conversions larger, "}.get(
                     (search.limit if search is not None else None) or "", "")
        steps.append(f"keep more layers in float ({bound}or name them after "
                     "`edge-transfer diagnose`)")
    elif not mixed:
        steps.append(f"run `edge-transfer diagnose {run} --format {failed.format}` to see "
                     "which layers break, then export with --keep-float auto")
    how = broken(failed, classes) if failed.spec.qat else None
    if failed.spec.qat and how is None and _conversion_lost(failed):
        steps.append("the conversion lost it, not the QAT fine-tune, so more --qat-epochs will "
                     "not help: export post-training int8 (or --keep-float auto)")
    elif failed.spec.qat and how is None:
        steps.append("fine-tune QAT longer (--qat-epochs)")
    elif failed.spec.qat and not ptq:
        steps.append("export post-training int8 (--precision int8 without --qat)")
    elif not failed.spec.qat and not qat:
        steps.append("try --qat")
    if not steps:
        steps.append("export fp16 or dynamic, which keep activations in float")
    advice = "; or ".join(steps)
    if how is not None:
        return f"{how}: a broken conversion that more --qat-epochs will not fix: {advice}"
    return advice

"""The advice of a failed variant names a step that can work (issue 11 item 4)."""

from __future__ import annotations

import dataclasses

from edge_transfer.core.records import ExportCheck, KeepFloatSearch
from edge_transfer.core.samples import encode
from edge_transfer.export.advice import next_step
from exporters import Artifact, ExportSpec


def _qat(predictions: list[int], accuracy: float) -> Artifact:
    check = ExportCheck(samples=len(predictions), max_abs_diff=0.9, top1_agreement=accuracy,
                        accuracy=accuracy, tolerance=0.01, passed=False,
                        predictions=encode(predictions))
    return Artifact("tflite", ExportSpec.int8().with_qat(), status="failed", check=check)


def test_qat_at_chance_is_not_told_to_train_longer() -> None:
    collapsed = _qat([4] * 225, 0.2)
    step = next_step(collapsed, [collapsed], "runs/t", classes=5)
    assert "at chance" in step and "will not fix" in step
    assert "--keep-float auto" in step and "without --qat" in step


def test_qat_at_chance_is_pointed_at_the_ptq_variant_that_passed() -> None:
    collapsed = _qat([4] * 225, 0.2)
    ptq = Artifact("tflite", ExportSpec.int8(), status="ok")
    assert next_step(collapsed, [ptq, collapsed], "runs/t", classes=5) == (
        "use tflite-int8 (post-training int8), which passed")


def test_qat_somewhat_below_float_may_train_longer() -> None:
    below = _qat([0, 1, 2, 3, 4] * 45, 0.85)
    assert "fine-tune QAT longer (--qat-epochs)" in next_step(below, [below], "runs/t", 5)


def _mixed(keep: tuple[str, ...], limit: str | None) -> Artifact:
    search = None if keep != ("auto",) else KeepFloatSearch(
        samples=134, float_accuracy=0.95, int8_bytes=1000, max_bytes_ratio=1.5,
        bytes_ratio=1.4, conversions=7, measured=True, within_budget=False,
        stopped="limit reached", limit=limit)
    return Artifact("tflite", ExportSpec.int8().mixed(keep), status="failed",
                    keep_float_search=search)


def test_a_failed_mixed_variant_names_only_the_bound_that_stopped_it() -> None:
    steps = {name: next_step(_mixed(keep, limit), [_mixed(keep, limit)], "runs/t")
             for name, keep, limit in [("bytes", ("auto",), "max_bytes"),
                                       ("conversions", ("auto",), "conversions"),
                                       ("named", ("conv2",), None)]}
    assert "--keep-float-max-bytes larger" in steps["bytes"]
    assert "--keep-float-conversions larger" in steps["conversions"]
    assert "--keep-float-" not in steps["named"] and "name them after" in steps["named"]


def test_qat_lost_by_its_conversion_is_not_told_to_train_longer() -> None:
    """A QAT file whose trained model kept float's accuracy and whose conversion lost it:
    more QAT epochs would not help (issue 22: the check names the step)."""
    import numpy as np

    from exporters.steps import measure

    y = np.arange(225) % 5
    lost = y.copy()
    lost[:60] = (lost[:60] + 1) % 5
    below = _qat(list(lost), float(np.mean(lost == y)))
    assert below.check is not None
    steps = measure("QAT", file_top1=lost, model_top1=y, float_top1=y, y=y)
    conversion = dataclasses.replace(below, check=dataclasses.replace(below.check, steps=steps))
    step = next_step(conversion, [conversion], "runs/t", 5)
    assert "the conversion lost it" in step and "--qat-epochs" in step
    assert "fine-tune QAT longer" not in step

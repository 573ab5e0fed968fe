"""Compare an exported file's outputs with its Keras model on the run's test split.

fp32 must match the Keras outputs within ``FP32_ATOL + FP32_RTOL * max|Keras output|``
(as :func:`numpy.allclose`, with the output's scale in place of each element): float32
arithmetic reordered by another runtime differs by an amount that grows with the output's
size and the model's depth (regnety_002's ONNX fp32 differs by 1.1e-4 with identical top-1),
while a real defect (wrong preprocessing, a missing layer) differs by far more.
Every variant is compared with the float model pair by pair on the same samples
(:func:`edge_transfer.core.stats.paired`): it fails when its accuracy dropped by more than
``max_drop`` *and* the drop is significant at ``alpha`` (exact McNemar), or, with
``rule="point"``, when the point estimate dropped by more than ``max_drop``.

>>> import numpy as np
>>> ref = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
>>> check_outputs(ref + 1e-6, ref, np.array([0, 1]), precision="fp32",
...               float_accuracy=1.0, max_drop=0.02).passed
True
"""

from __future__ import annotations

import numpy as np

from edge_transfer.core import stats
from edge_transfer.core.records.paired import Comparison
from edge_transfer.core.samples import encode
from exporters.spec import Check
from exporters.steps import measure, which_step

FP32_ATOL = 1e-4
FP32_RTOL = 1e-3


def tolerance_for(precision: str, output_scale: float = 1.0) -> float | None:
    """The max-abs-diff bound of a precision whose reference outputs reach
    ``output_scale`` (max |Keras output|); None: judged by accuracy alone.

    >>> tolerance_for("fp32"), tolerance_for("fp32", output_scale=50.0), tolerance_for("int8")
    (0.0011, 0.0501, None)
    """
    if precision != "fp32":
        return None
    return round(FP32_ATOL + FP32_RTOL * float(output_scale), 12)


def check_outputs(outputs: np.ndarray, reference: np.ndarray, y: np.ndarray, *,
                  precision: str, float_accuracy: float, max_drop: float,
                  alpha: float = stats.DEFAULT_ALPHA, rule: stats.Rule = "significant",
                  float_reference: np.ndarray | None = None, step: str | None = None
                  ) -> Check:
    """A :class:`Check`: passed when within tolerance of ``reference`` (the outputs of the
    Keras model the file was converted from, on the same samples) and its accuracy drop
    against the float model is not a regression under ``rule`` (see the module docstring).

    The float model's outputs are ``reference`` itself, unless the file was converted from a
    fine-tuned copy (``step``: ``"QAT"`` or ``"pruning"``): then they are
    ``float_reference``, and the check also records both steps (:mod:`exporters.steps`).
    ``float_accuracy`` is kept for callers; the comparison is made from the outputs."""
    y = np.asarray(y).astype(np.int64)
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    tolerance = tolerance_for(precision, scale)
    if outputs.shape != reference.shape:
        return Check(samples=len(y), max_abs_diff=float("inf"), top1_agreement=0.0,
                     accuracy=0.0, tolerance=tolerance, passed=False)
    diff = float(np.max(np.abs(outputs.astype(np.float64) - reference))) if len(y) else 0.0
    top1 = np.argmax(outputs, axis=1)
    source_top1 = np.argmax(reference, axis=1)
    float_top1, steps = source_top1, None
    if step is not None and float_reference is not None:   # converted from a trained copy
        float_top1 = np.argmax(float_reference, axis=1)
        steps = measure(step, file_top1=top1, model_top1=source_top1, float_top1=float_top1,
                        y=y)
    agreement = float(np.mean(top1 == source_top1)) if len(y) else 0.0
    accuracy = float(np.mean(top1 == y)) if len(y) else 0.0
    comparison = stats.paired(float_top1 == y, top1 == y)
    decision = stats.decide(comparison, max_drop, alpha, rule)
    passed = bool(np.isfinite(diff) and (tolerance is None or diff <= tolerance)
                  and decision.verdict == "pass")
    return Check(samples=len(y), max_abs_diff=diff, top1_agreement=agreement,
                 accuracy=accuracy, tolerance=tolerance, passed=passed,
                 predictions=encode(top1), vs_float=Comparison.of(comparison),
                 underpowered=decision.underpowered, steps=steps)


def failure_reason(check: Check, *, float_accuracy: float, max_drop: float,
                   advice: str = "calibrate with more samples (--calibration-samples) "
                                 "or try --qat", rule: stats.Rule = "significant") -> str:
    """One line saying why a check failed (by ``rule``, as :func:`check_outputs` judged it),
    and ``advice``: the next step to take.

    >>> from exporters.spec import Check
    >>> drop = Comparison(n=5000, difference=-0.03, low=-0.036, high=-0.024, p_value=1e-9,
    ...                   lost=200, gained=50)
    >>> failure_reason(Check(5000, 0.3, 0.9, 0.92, None, False, vs_float=drop),
    ...                float_accuracy=0.95, max_drop=0.01)[:78]
    'accuracy 0.9200 is -3.0 pt [-3.6, -2.4] from the float model (0.9500, p=<0.001'
    >>> "significant" in failure_reason(Check(5000, 0.3, 0.9, 0.92, None, False, vs_float=drop),
    ...                                 float_accuracy=0.95, max_drop=0.01, rule="point")
    False
    """
    if check.tolerance is not None and not check.max_abs_diff <= check.tolerance:
        scale = (check.tolerance - FP32_ATOL) / FP32_RTOL
        return (f"outputs differ from the Keras model by {check.max_abs_diff:.3g} "
                f"> tolerance {check.tolerance:.3g} (= {FP32_ATOL:g} + {FP32_RTOL:g} x "
                f"max|Keras output| {scale:.3g}) on {check.samples} test samples")
    fix = advice
    if check.steps is not None:
        fix = f"{which_step(check.steps)}; {advice}"
    cmp = check.vs_float
    if cmp is None:
        return (f"accuracy {check.accuracy:.4f} is more than {max_drop:.3f} below the float "
                f"model's {float_accuracy:.4f} on {check.samples} test samples; {fix}")
    return (f"accuracy {check.accuracy:.4f} is {cmp.difference * 100:+.1f} pt "
            f"[{cmp.low * 100:+.1f}, {cmp.high * 100:+.1f}] from the float model "
            f"({float_accuracy:.4f}, p={stats.format_p(cmp.p_value)}, lost {cmp.lost}, "
            f"gained {cmp.gained}) on {check.samples} test samples: beyond the "
            f"{max_drop * 100:.1f}-pt tolerance"
            f"{' and significant' if rule == 'significant' else ''}; {fix}")

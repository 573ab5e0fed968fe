"""Compare an exported file's outputs with its Keras model's on the validation split.

fp32 must match within ``FP32_TOLERANCE`` (max absolute difference of the probabilities);
every variant must keep its accuracy within ``max_drop`` of the float model's.

>>> import numpy as np
>>> ref = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
>>> check_outputs(ref + 1e-6, ref, np.array([0, 1]), precision="fp32",
...               float_accuracy=1.0, max_drop=0.02).passed
True
"""

from __future__ import annotations

import numpy as np

from exporters._types import Check

FP32_TOLERANCE = 1e-4


def tolerance_for(precision: str) -> float | None:
    """The max-abs-diff bound of a precision (None: judged by accuracy alone)."""
    return FP32_TOLERANCE if precision == "fp32" else None


def check_outputs(outputs: np.ndarray, reference: np.ndarray, y: np.ndarray, *,
                  precision: str, float_accuracy: float, max_drop: float) -> Check:
    """A :class:`Check`: passed when within tolerance and accuracy >= float - max_drop."""
    if outputs.shape != reference.shape:
        return Check(samples=len(y), max_abs_diff=float("inf"), top1_agreement=0.0,
                     accuracy=0.0, tolerance=tolerance_for(precision), passed=False)
    diff = float(np.max(np.abs(outputs.astype(np.float64) - reference))) if len(y) else 0.0
    top1 = np.argmax(outputs, axis=1)
    agreement = float(np.mean(top1 == np.argmax(reference, axis=1)))
    accuracy = float(np.mean(top1 == y))
    tolerance = tolerance_for(precision)
    passed = bool(np.isfinite(diff) and (tolerance is None or diff <= tolerance)
                  and accuracy >= float_accuracy - max_drop - 1e-9)
    return Check(samples=len(y), max_abs_diff=diff, top1_agreement=agreement,
                 accuracy=accuracy, tolerance=tolerance, passed=passed)


def failure_reason(check: Check, *, float_accuracy: float, max_drop: float,
                   advice: str = "calibrate with more samples (--calibration-samples) "
                                 "or try --qat") -> str:
    """One line saying why a check failed, and ``advice``: the next step to take."""
    if check.tolerance is not None and not check.max_abs_diff <= check.tolerance:
        return (f"outputs differ from the Keras model by {check.max_abs_diff:.3g} "
                f"> tolerance {check.tolerance:g} on {check.samples} validation samples")
    return (f"accuracy {check.accuracy:.4f} is more than {max_drop:.3f} below the float "
            f"model's {float_accuracy:.4f} on {check.samples} validation samples; {advice}")

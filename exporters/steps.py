"""A QAT or pruned variant judged against the float model the user had, step by step.

QAT and pruning fine-tune the float model, then convert the trained model. The file is
judged against the float model, as every variant is (:func:`exporters.check.check_outputs`);
each step in between is a second comparison, paired on the same samples: the fine-tune (the
trained Keras model against the float model) and the conversion (the file against the trained
model). When the file fails, :func:`which_step` says which step lost the accuracy.

>>> import numpy as np
>>> y = np.array([0, 1] * 50)
>>> steps = measure("QAT", file_top1=np.r_[y[:45], 1 - y[45:]],
...                 model_top1=np.r_[y[:46], 1 - y[46:]], float_top1=y, y=y)
>>> steps.model_accuracy, round(steps.fine_tune.difference, 2), steps.agreement
(0.46, -0.54, 0.99)
>>> print(which_step(steps))  # doctest: +NORMALIZE_WHITESPACE
the QAT fine-tune lost 54.0 pt: QAT model 0.4600 vs float 1.0000 (-54.0 pt [-63.4, -43.6],
p=<0.001); the conversion kept it: file vs QAT model -1.0 pt [-3.7, +1.7],
p=1, top-1 agreement 0.990
"""

from __future__ import annotations

import numpy as np

from edge_transfer.core import stats
from edge_transfer.core.records.export import TrainedSteps
from edge_transfer.core.records.paired import Comparison
from edge_transfer.core.samples import encode


def step_of(qat: bool, sparsity: float | None) -> str | None:
    """The fine-tune a variant's model went through: ``"QAT"``, ``"pruning"`` or None.

    >>> step_of(True, None), step_of(False, 0.5), step_of(False, None)
    ('QAT', 'pruning', None)
    """
    return "QAT" if qat else "pruning" if sparsity is not None else None


def measure(step: str, *, file_top1: np.ndarray, model_top1: np.ndarray,
            float_top1: np.ndarray, y: np.ndarray) -> TrainedSteps:
    """The fine-tune (trained model - float) and the conversion (file - trained model),
    each paired on the same samples (top-1 class per sample, true labels ``y``)."""
    y = np.asarray(y).astype(np.int64)
    model_right = model_top1 == y
    return TrainedSteps(
        step=step, model_accuracy=float(np.mean(model_right)) if len(y) else 0.0,
        fine_tune=Comparison.of(stats.paired(float_top1 == y, model_right)),
        conversion=Comparison.of(stats.paired(model_right, file_top1 == y)),
        agreement=float(np.mean(file_top1 == model_top1)) if len(y) else 0.0,
        model_predictions=encode(model_top1))


def which_step(steps: TrainedSteps, alpha: float = stats.DEFAULT_ALPHA) -> str:
    """Which step lost the file's accuracy against the float model, with both steps' paired
    figures: the one that lost more "lost" it; the other "kept it" unless it too lost
    accuracy significantly (exact McNemar at ``alpha``), then it "also lost" its share."""
    model = f"{steps.step} model"
    float_accuracy = steps.model_accuracy - steps.fine_tune.difference
    tune = (f"{steps.step} fine-tune", f"{model} {steps.model_accuracy:.4f} vs float "
            f"{float_accuracy:.4f} ({_short(steps.fine_tune)})", steps.fine_tune)
    conv = ("conversion", f"file vs {model} {_short(steps.conversion)}, top-1 agreement "
            f"{steps.agreement:.3f}", steps.conversion)
    if min(steps.fine_tune.difference, steps.conversion.difference) >= 0:
        return f"neither step lost accuracy: the {tune[0]}: {tune[1]}; the conversion: {conv[1]}"
    first, second = (tune, conv) if tune[2].difference <= conv[2].difference else (conv, tune)
    other = second[2]
    verb = (f"also lost {-other.difference * 100:.1f} pt"
            if other.difference < 0 and other.p_value < alpha else "kept it")
    return (f"the {first[0]} lost {-first[2].difference * 100:.1f} pt: {first[1]}; "
            f"the {second[0]} {verb}: {second[1]}")


def _interval(cmp: Comparison) -> str:
    return f"{cmp.difference * 100:+.1f} pt [{cmp.low * 100:+.1f}, {cmp.high * 100:+.1f}]"


def _short(cmp: Comparison) -> str:
    return f"{_interval(cmp)}, p={stats.format_p(cmp.p_value)}"

"""Warnings that a trained model is not what its figures suggest, each with a cause and a fix.

Pure functions of a run's figures (numpy and the standard library; no TensorFlow):

- :func:`chance_warning` - validation at chance while training accuracy is not: BatchNorm.
- :func:`untrained_warning` - validation and training both at chance: it learned nothing.
- :func:`inference_gap_warning` - on the same training images, inference-mode accuracy far
  below the training-mode accuracy of the kept epoch: the model evaluated is not the model
  that trained (BatchNorm statistics, preprocessing inside the model, dropout).
- :func:`validation_chance_warning` - per-epoch validation at chance at every epoch while
  training accuracy rose: early stopping chose an epoch on figures that mean nothing.
- :func:`still_improving_warning` - validation accuracy still rising, beyond noise, when the
  epochs ran out: training stopped on its budget, not on convergence; train longer.

Below-chance accuracy is :func:`edge_transfer.core.stats.health_warning`'s (every command's).

>>> print(inference_gap_warning(0.933, 0.203, 541, epoch=8, has_batchnorm=True))
... # doctest: +ELLIPSIS
the model evaluated is not the model that trained: on the same 541 training images it \
scores 0.203 [0.172, 0.239] in inference mode but 0.933 in training mode at the kept epoch 8; ...
>>> inference_gap_warning(0.90, 0.97, 541, epoch=8, has_batchnorm=True) is None
True
"""

from __future__ import annotations

import math
from pathlib import Path

from edge_transfer.core import stats
from edge_transfer.core.records.run import RunInfo, RunMetrics
from edge_transfer.core.stats import Interval

LEARNED_MARGIN = 0.2   # training accuracy this far above the chance interval: it learned


def _val_at_chance(val_accuracy: float, classes: int, val_size: int) -> Interval | None:
    """The Wilson interval of a validation accuracy on ``val_size`` images when it contains
    chance (``1 / classes``), else None: what :func:`chance_warning` and
    :func:`untrained_warning` both start from."""
    from edge_transfer.core import stats

    if classes < 2 or val_size < 1:
        return None
    interval = stats.wilson(round(val_accuracy * val_size), val_size)
    return interval if stats.at_chance(interval, classes) else None


def chance_warning(train_accuracy: float, val_accuracy: float, classes: int,
                   val_size: int) -> str | None:
    """A warning naming BatchNorm when validation accuracy is at chance (its Wilson interval
    contains ``1 / classes``, see :mod:`edge_transfer.core.stats`) while training accuracy is
    not (above that interval by 0.2 or more).

    >>> chance_warning(0.98, 0.20, 5, 135) is not None
    True
    >>> chance_warning(0.98, 0.90, 5, 135) is None
    True
    """
    interval = _val_at_chance(val_accuracy, classes, val_size)
    if interval is None or train_accuracy < interval.high + LEARNED_MARGIN:
        return None
    return (f"validation accuracy {val_accuracy:.3f} is chance level ({1 / classes:.3f}) while "
            f"training accuracy is {train_accuracy:.3f}: the BatchNorm moving statistics "
            "probably do not describe the data (BatchNorm layers trained from random weights "
            "with a high momentum, or frozen with statistics from other data); check the "
            "model's BatchNorm layers, or start from a pretrain run of this extractor")


def untrained_hint(has_batchnorm: bool, learning_rate: float | None = None) -> str:
    """What to try when a model trained from random weights learned nothing (training
    accuracy at chance too): a network without BatchNorm (VGG) needs a lower learning rate.

    >>> untrained_hint(False, 1e-3)
    'it has no BatchNorm layer: a deep network without BatchNorm (as VGG) trained from random \
weights often learns nothing at this learning rate; train again with --learning-rate 0.0001, \
or from pretrained weights'
    >>> untrained_hint(True)
    'train again with more --epochs, a lower --learning-rate, or from pretrained weights'
    """
    if has_batchnorm:
        return "train again with more --epochs, a lower --learning-rate, or from pretrained weights"
    lower = f"{learning_rate / 10:g}" if learning_rate else "1e-4"
    return ("it has no BatchNorm layer: a deep network without BatchNorm (as VGG) trained from "
            "random weights often learns nothing at this learning rate; train again with "
            f"--learning-rate {lower}, or from pretrained weights")


def untrained_warning(train_accuracy: float, val_accuracy: float, classes: int,
                      val_size: int, has_batchnorm: bool,
                      learning_rate: float | None = None) -> str | None:
    """A warning when validation accuracy is at chance and training accuracy is not clearly
    above it either (the case :func:`chance_warning` leaves out): the model learned nothing,
    with what to change (:func:`untrained_hint`).

    >>> print(untrained_warning(0.20, 0.20, 5, 135, has_batchnorm=False, learning_rate=1e-3))
    ... # doctest: +ELLIPSIS
    the model did not learn: validation accuracy 0.200 is chance level (0.200) and training \
accuracy 0.200 is not clearly above it; it has no BatchNorm layer: ... --learning-rate 0.0001, ...
    >>> untrained_warning(0.98, 0.20, 5, 135, has_batchnorm=True) is None   # chance_warning's
    True
    """
    interval = _val_at_chance(val_accuracy, classes, val_size)
    if interval is None or train_accuracy >= interval.high + LEARNED_MARGIN:
        return None
    return (f"the model did not learn: validation accuracy {val_accuracy:.3f} is chance level "
            f"({1 / classes:.3f}) and training accuracy {train_accuracy:.3f} is not clearly "
            f"above it; {untrained_hint(has_batchnorm, learning_rate)}")


# Training-mode accuracy this far above the inference-mode accuracy of the same images (and
# above its whole interval): the model evaluated is not the model that trained.
GAP = 0.2
_INPUT_FIX = ("check the `input:` line of training (pixels scaled twice? preprocessing.json, "
              "--input-range)")
_BATCHNORM_FIX = ("train BatchNorm layers from random weights with this version (their "
                  "statistics are recomputed before each validation pass)")


def _fix(has_batchnorm: bool) -> str:
    return _INPUT_FIX + (f", and {_BATCHNORM_FIX}" if has_batchnorm else
                         "; a layer that acts only in training (dropout, noise, random "
                         "augmentation inside the model) must not change what it predicts")


def inference_gap_warning(train_mode: float, inference: float, samples: int, epoch: int,
                          has_batchnorm: bool) -> str | None:
    """A warning when the inference-mode accuracy on ``samples`` training images is more
    than :data:`GAP` below ``train_mode`` (fit's accuracy on the same images at the kept
    ``epoch``), beyond its Wilson interval; None otherwise."""
    if samples < 1:
        return None
    interval = stats.wilson(round(inference * samples), samples)
    if train_mode - inference < GAP or interval.high >= train_mode:
        return None
    causes = ["preprocessing inside the model that acts differently in training and "
              "inference", "dropout or layers active only in training"]
    if has_batchnorm:
        causes.insert(0, "BatchNorm moving statistics that do not describe the data")
    return (f"the model evaluated is not the model that trained: on the same {samples} "
            f"training images it scores {inference:.3f} [{interval.low:.3f}, "
            f"{interval.high:.3f}] in inference mode but {train_mode:.3f} in training mode at "
            f"the kept epoch {epoch}; likely {', or '.join(causes)}; {_fix(has_batchnorm)}")


def validation_chance_warning(history: dict[str, list[float]], classes: int, val_size: int,
                              stage: str = "", has_batchnorm: bool = True) -> str | None:
    """A warning when validation accuracy was at chance at every epoch (2 or more) of
    ``history`` while training accuracy rose clearly above that (:data:`LEARNED_MARGIN`).

    >>> h = {"accuracy": [0.23, 0.65, 0.93], "val_accuracy": [0.2, 0.2, 0.19],
    ...      "best_epoch": [1.0]}
    >>> validation_chance_warning(h, 5, 135).split(":")[0][-61:]
    'at each of the 3 epochs while training accuracy rose to 0.930'
    >>> validation_chance_warning({**h, "val_accuracy": [0.2, 0.5, 0.9]}, 5, 135) is None
    True
    """
    val, train = history.get("val_accuracy") or [], history.get("accuracy") or []
    if len(val) < 2 or not train or classes < 2 or val_size < 1:
        return None
    if any(_val_at_chance(v, classes, val_size) is None for v in val):
        return None
    top = max(stats.wilson(round(v * val_size), val_size).high for v in val)
    if max(train) < top + LEARNED_MARGIN:
        return None
    best = int(history.get("best_epoch", [len(val)])[0])
    where = f" of {stage}" if stage else ""
    cause = ("BatchNorm statistics that lag the weights, or preprocessing that differs "
             "between training and inference" if has_batchnorm else
             "preprocessing or layers that differ between training and inference")
    return (f"validation accuracy was at chance ({1 / classes:.3f}) at each of the "
            f"{len(val)} epochs{where} while training accuracy rose to {max(train):.3f}: "
            f"early stopping kept epoch {best} on figures that mean nothing (the validation "
            f"pass does not see the model that trains: {cause}); {_fix(has_batchnorm)}")


# The fewest epochs a "still improving" judgement needs: the last step must rise against a
# curve that already had a step to rise in. The first step (epoch 1 -> 2) rises in nearly every
# run that learns at all, converged or not, so two epochs tell nothing about the slope.
MIN_EPOCHS = 3
# The option that sets each training stage's epoch budget, in stage order (pretrain and
# finetune's head stage; finetune's stage 2).
EPOCH_OPTIONS = ("--epochs", "--finetune-epochs")


# The Wilson interval whose lower bound the last epoch must clear: two-sided 90%, so that its
# lower bound is a one-sided 95% bound ("still rising" is a claim about one direction).
RISING_CONFIDENCE = 0.90


def still_improving_warning(history: dict[str, list[float]], val_size: int, stage: str = "",
                            option: str = "--epochs") -> str | None:
    """A warning when training ran out of epochs while validation accuracy was still rising:
    the run stopped on its epoch budget, not on convergence. It fires only when all hold:

    - ``history`` has :data:`MIN_EPOCHS` epochs or more (the first step says nothing);
    - the kept epoch (``best_epoch``: the lowest validation loss, the weights restored) is
      the last one. Early stopping ends a run only after ``--patience`` (1 or more) epochs
      without a lower validation loss, so a run whose last epoch is the best ran its whole
      budget, still improving by early stopping's own measure;
    - the last epoch's validation accuracy beats every earlier epoch's by more than noise:
      the best earlier figure lies below the last one's one-sided 95% Wilson lower bound on
      ``val_size`` images (:data:`RISING_CONFIDENCE`, :func:`edge_transfer.core.stats.wilson`),
      a one-sided test of "rising" that takes the earlier figure as known. The loss keeps
      falling on a model that has levelled off (the demo's validation sits at 1.0 while it
      does), so accuracy must move too: a plateau, or a last up-tick within the noise of the
      validation size, stays silent.

    >>> h = {"val_accuracy": [0.4667, 0.6593, 0.6815, 0.7556], "best_epoch": [4.0]}
    >>> print(still_improving_warning(h, 135))   # doctest: +ELLIPSIS
    validation accuracy was still rising when the 4 epochs ran out: 0.756 at the last \
epoch on 135 images, above every earlier epoch by more than noise (best before 0.681 at \
epoch 3; one-sided 95% bound 0.690), with the lowest validation loss; ... train again with \
--epochs 8 or more ...
    >>> still_improving_warning({**h, "best_epoch": [2.0]}, 135) is None   # early stopping
    True
    >>> still_improving_warning({**h, "val_accuracy": [0.40, 0.70, 0.74, 0.76]}, 135) is None
    True
    """
    val = history.get("val_accuracy") or []
    epochs = len(val)
    if epochs < MIN_EPOCHS or val_size < 1 or not all(math.isfinite(v) for v in val):
        return None
    if int(history.get("best_epoch", [0.0])[0]) != epochs:
        return None
    last = stats.wilson(round(val[-1] * val_size), val_size, RISING_CONFIDENCE)
    before = max(range(epochs - 1), key=lambda i: val[i])
    best = round(val[before] * val_size) / val_size
    if best >= last.low:
        return None
    where = f" of {stage}" if stage else ""
    return (f"validation accuracy was still rising when the {epochs} epochs{where} ran out: "
            f"{last.estimate:.3f} at the last epoch on {val_size} images, above every earlier "
            f"epoch by more than noise (best before {best:.3f} at epoch {before + 1}; "
            f"one-sided 95% bound {last.low:.3f}), with the lowest validation loss; training "
            "stopped on its epoch budget, not because it converged: train again with "
            f"{option} {2 * epochs} or more (early stopping, --patience, ends it when "
            "validation stops improving)")


def _kept_stage(history: dict[str, list[float]],
                stages: dict[str, dict[str, list[float]]] | None) -> tuple[str, str]:
    """The name of the stage whose model is kept (``history``, found among ``stages`` by its
    figures, so a copy finds it too) and its epoch option."""
    for index, (name, stage) in enumerate((stages or {}).items()):
        if stage == history:
            return name, EPOCH_OPTIONS[min(index, len(EPOCH_OPTIONS) - 1)]
    return "", EPOCH_OPTIONS[0]


def run_warnings(history: dict[str, list[float]], metrics: RunMetrics, train_size: int,
                 val_size: int, classes: int, has_batchnorm: bool,
                 learning_rate: float | None = None,
                 stages: dict[str, dict[str, list[float]]] | None = None) -> list[str]:
    """Every warning a finished training earns: per-epoch validation at chance in any of
    ``stages`` (name -> history); validation still rising when the epochs of ``history``
    (the stage whose model is kept) ran out (:func:`still_improving_warning`); then one of
    the inference gap (kept epoch of ``history`` vs ``metrics.train_accuracy``),
    :func:`chance_warning` or :func:`untrained_warning`."""
    out = [line for name, stage in (stages or {"": history}).items()
           if (line := validation_chance_warning(stage, classes, metrics.val_samples
                                                 or val_size, name, has_batchnorm))]
    rising = still_improving_warning(history, metrics.val_samples or val_size,
                                     *_kept_stage(history, stages))
    out += [rising] if rising else []
    if metrics.val_accuracy is None:
        return out
    accuracy = history.get("accuracy") or [0.0]
    best = int(history.get("best_epoch", [len(accuracy)])[0])
    train_mode = accuracy[min(best, len(accuracy)) - 1]
    gap = (inference_gap_warning(train_mode, metrics.train_accuracy, train_size, best,
                                 has_batchnorm)
           if metrics.train_accuracy is not None else None)
    train = max(train_mode, metrics.train_accuracy or 0.0)
    size = metrics.val_samples or val_size
    warning = (gap or chance_warning(train, metrics.val_accuracy, classes, size)
               or untrained_warning(train, metrics.val_accuracy, classes, size, has_batchnorm,
                                    learning_rate))
    return out + ([warning] if warning else [])


def training_warnings(run_dir: str | Path) -> list[str]:
    """The warnings a run's training recorded (run.json), each as ``from training: ...``, for
    the commands that read the run later (export, report); empty when there is no record."""
    from edge_transfer.core.errors import UserError

    path = Path(run_dir) / RunInfo.FILE_NAME
    if not path.is_file():
        return []
    try:
        return [f"from training: {line}" for line in RunInfo.load(path).warnings]
    except UserError:
        return []

"""Validation that means something while BatchNorm layers learn from random weights.

In training mode a BatchNorm layer normalises with the batch's statistics; in inference mode
(validation, test, export) with moving averages that trail the weights. Trained from random
weights for a few hundred steps, those averages describe no data the network now makes, and
each validation pass measures a different model from the one that trains: early stopping
then keeps an arbitrary epoch (seen: validation at chance every epoch, epoch 1 restored).

:func:`before_validation` recomputes the statistics of the BatchNorm layers that train, on a
fixed stratified sample of the training images under the epoch's weights (dropout off, as at
inference), just before each validation pass: early stopping and the best epoch are chosen
on the model that is then evaluated, and ``restore_best_weights`` restores its statistics too.

Not run as a doctest (it needs a model in training; tests/test_batchnorm.py does):

>>> fit(..., callbacks=[before_validation(keras, model, splits.train, pre)])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.data.dataset import Dataset, stratified_sample

# Training images whose statistics are taken before each validation pass, and their batch:
# about 0.1-0.3 of a digits epoch's cost on an EfficientNetV2B0 at 48 px.
SAMPLES = 256
BATCH = 128


def trains_batchnorm(model: Any) -> bool:
    """Whether ``model`` has a BatchNorm layer that trains (runs on batch statistics)."""
    from edge_transfer.core.keras import load

    _, keras = load()
    return bool(model.trainable) and any(
        isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
        for layer in model.layers)


def before_validation(keras: Any, model: Any, train: Dataset, pre: Preprocessing,
                      seed: int = 0) -> Any:
    """A callback that recomputes ``model``'s trainable BatchNorm statistics on a fixed
    sample of ``train`` (:data:`SAMPLES` images, stratified, seeded) at the start of each
    validation pass (``on_test_begin``, which ``fit`` calls before it validates)."""
    from edge_transfer.train.models import recompute_batchnorm

    sample = stratified_sample(train, SAMPLES, seed)
    pixels = pre.to_pixels(sample.x.read())        # uint8, normalised at each use

    class StatisticsBeforeValidation(keras.callbacks.Callback):  # type: ignore[misc]
        def on_test_begin(self, logs: Any = None) -> None:
            recompute_batchnorm(model, (pre.normalize(pixels[i:i + BATCH])
                                        for i in range(0, len(pixels), BATCH)))

    return StatisticsBeforeValidation()

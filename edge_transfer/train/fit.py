"""The fit loop of ``pretrain`` and ``finetune``: ``fit`` (``model.fit`` with early stopping on a
fixed validation subset, few-shot epochs of at least ``MIN_STEPS_PER_EPOCH`` steps, a frozen
extractor's validation run on features computed once), what changes between stages (``unfreeze``,
``add_l2sp``, ``compile_model``), the from-scratch baseline's model, BatchNorm statistics
recomputed after training, and the wall seconds by phase (``Timer``).

>>> timer = Timer()
>>> with timer.phase("data"):
...     pass
>>> sorted(timer.seconds)
['data', 'evaluation', 'training']
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.data.dataset import Dataset, Splits, stratified_sample
from edge_transfer.train import backbones, inference
from edge_transfer.train.config import FinetuneConfig, TrainingConfig
from edge_transfer.train.distribute import workers
from edge_transfer.train.messages import say

# Few-shot data makes one-batch epochs: an epoch is at least this many steps (data repeated),
# so that early stopping and the epoch budget mean the same on 50 images as on 5,000.
MIN_STEPS_PER_EPOCH = 10


def compile_model(keras: Any, model: Any, learning_rate: float) -> None:
    """Adam at ``learning_rate``, sparse categorical cross-entropy, accuracy."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


class Timer:
    """Wall seconds by phase: data (listing, hashing), training, evaluation (per-epoch
    validation inside fit, and the final figures)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"data": 0.0, "training": 0.0, "evaluation": 0.0}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def callback(self, keras: Any) -> Any:
        timer = self

        class EvaluationTime(keras.callbacks.Callback):  # type: ignore[misc]
            def on_test_begin(self, logs: Any = None) -> None:
                self.start = time.perf_counter()

            def on_test_end(self, logs: Any = None) -> None:
                spent = time.perf_counter() - self.start
                timer.seconds["evaluation"] += spent
                timer.seconds["training"] -= spent   # fit's time is counted as training

        return EvaluationTime()


def fit(cfg: TrainingConfig, keras: Any, model: Any, splits: Splits, pre: Preprocessing,
        epochs: int, seed: int, timer: Timer | None = None,
        frozen: tuple[Any, Any] | None = None) -> dict[str, list[float]]:
    """``model.fit`` with early stopping on the validation loss of a fixed stratified subset
    (``--eval-samples``, the same subset :func:`edge_transfer.train.evaluate.accuracies`
    reports on). ``frozen`` (extractor, its features model) while the extractor does not
    train: the subset's features are computed once and each epoch runs only the head on them.
    While BatchNorm layers train, their statistics are recomputed before each validation pass
    (:mod:`edge_transfer.train.batchnorm`): the epoch kept is judged on the model then
    evaluated."""
    from edge_transfer.data.tfdata import Batching, from_dataset, reading

    steps = -(-len(splits.train) // cfg.batch_size)
    shards = workers(model)
    batching = Batching(cfg.batch_size, shuffle=True, seed=seed,
                        augment=cfg.augmentations,
                        repeat=steps < MIN_STEPS_PER_EPOCH or shards is not None)
    train = from_dataset(splits.train, pre, batching,
                         cache_file=_cache_file(cfg, splits.train, pre, "train"),
                         shard=shards)
    subset = stratified_sample(splits.val, cfg.eval_samples, cfg.seed)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                         restore_best_weights=True)
    timer = timer or Timer()
    val, callbacks = None, [stop, timer.callback(keras)]
    if frozen is not None and shards is None:
        with timer.phase("evaluation"):
            check = _head_validation(keras, model, *frozen, subset, pre, cfg.eval_batch_size,
                                     timer)
        callbacks.insert(0, check)          # before EarlyStopping, which reads its logs
    else:
        val = from_dataset(subset, pre, Batching(cfg.eval_batch_size))
        from edge_transfer.train import batchnorm

        if batchnorm.trains_batchnorm(model):   # after the timer's: counted as evaluation
            callbacks.append(batchnorm.before_validation(keras, model, splits.train, pre, seed))
    with timer.phase("training"), reading():
        result = model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks,
                           steps_per_epoch=max(steps, MIN_STEPS_PER_EPOCH), verbose=cfg.verbose)
    history = {k: [float(v) for v in vs] for k, vs in result.history.items()}
    history["best_epoch"] = [float(np.argmin(history["val_loss"]) + 1)]
    return history


def _head_validation(keras: Any, model: Any, extractor: Any, features: Any, subset: Dataset,
                     pre: Preprocessing, batch_size: int, timer: Timer) -> Any:
    """A callback logging ``val_loss`` and ``val_accuracy`` at each epoch's end, as
    ``fit(validation_data=...)`` would, for a model whose extractor is frozen: the subset's
    features are computed once here, then each epoch runs only the head on them (the
    extractor's share of the work is done once instead of every epoch)."""
    from edge_transfer.train.models import head_model

    vectors = inference.predict_split(features, subset, pre, batch_size)
    head = head_model(model, extractor)
    labels = subset.y

    class HeadValidation(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            start = time.perf_counter()
            probs = inference.predict(head, vectors, batch_size)
            loss = np.mean(keras.losses.sparse_categorical_crossentropy(labels, probs))
            loss += sum(float(extra) for extra in model.losses)   # as Keras adds them
            if logs is not None:
                logs["val_loss"] = float(loss)
                logs["val_accuracy"] = float(np.mean(np.argmax(probs, axis=1) == labels))
            spent = time.perf_counter() - start
            timer.seconds["evaluation"] += spent
            timer.seconds["training"] -= spent   # fit's time is counted as training

    return HeadValidation()


def unfreeze(extractor: Any, top: int | None, bn_trainable: bool) -> int:
    """Make the top ``top`` weight layers (all when None) trainable; BatchNorm stays frozen
    (inference mode) unless the extractor is untrained."""
    from edge_transfer.core.keras import load
    from edge_transfer.train.models import weight_layers

    _, keras = load()
    layers = weight_layers(extractor)
    chosen = layers if top is None else layers[len(layers) - top:] if top else []
    count = 0
    for layer in chosen:
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = bn_trainable or not is_bn
        count += int(layer.trainable)
    return count


def add_l2sp(model: Any, extractor: Any, alpha: float) -> None:
    """Penalise the distance of every trainable extractor kernel from its starting value."""
    from edge_transfer.train.models import l2sp

    for layer in extractor.layers:
        if not layer.trainable:
            continue
        for weight in layer.trainable_weights:
            if "kernel" in weight.name:
                reg = l2sp(alpha, weight.numpy())
                model.add_loss(lambda reg=reg, weight=weight: reg(weight))


def scratch_model(keras: Any, extractor: Any, num_classes: int, cfg: FinetuneConfig) -> Any:
    """The same extractor architecture with fresh random weights, plus the same head."""
    from edge_transfer.train.models import add_head, set_batchnorm

    keras.utils.set_random_seed(cfg.seed + 2)
    fresh = keras.models.clone_model(extractor)
    set_batchnorm(fresh, momentum=backbones.SCRATCH_BN_MOMENTUM, trainable=True)
    for layer in fresh.layers:
        layer.trainable = True
    model = add_head(fresh, num_classes, cfg.dropout, prefix="scratch_head")
    compile_model(keras, model, cfg.learning_rate)
    return model


def _cache_file(cfg: TrainingConfig, split: Dataset, pre: Preprocessing,
                name: str) -> Path | None:
    if cfg.cache is None:
        return None
    shape = "x".join(str(d) for d in split.x.image_shape)
    return Path(cfg.cache) / f"{split.fingerprint()}-{name}-{shape}"


def recompute_batchnorm(cfg: TrainingConfig, model: Any, splits: Splits,
                        pre: Preprocessing, limit: int = 4096, batch_size: int = 128) -> None:
    """Moving statistics of the BatchNorm layers that trained, recomputed on the training
    images (at most ``limit``) under the final weights (see ``models.recompute_batchnorm``)."""
    from edge_transfer.train import models

    x = splits.train.x[:limit]
    count = models.recompute_batchnorm(model, (pre.apply(batch) for batch in x.batches(batch_size)))
    if count:
        say(cfg, f"BatchNorm: statistics of {count} layers recomputed on "
                 f"{len(x)} training images")

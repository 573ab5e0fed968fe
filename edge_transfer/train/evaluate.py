"""The figures of a trained model: train, validation (the fixed stratified subset early stopping
used) and test accuracy with the test split's per-sample top-1 (``accuracies``), and for
``finetune --source-data`` the source task's accuracy before and after fine-tuning on the same
images (``source_before``).

Not run as a doctest (it needs a trained model; tests/test_transfer.py checks the figures):

>>> metrics = accuracies(model, splits, pre, cfg)                      # doctest: +SKIP
>>> metrics.test_samples == len(splits.test)                           # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records.run import RunMetrics
from edge_transfer.data.dataset import Dataset, Splits, stratified_sample
from edge_transfer.train import backbones, inference
from edge_transfer.train.config import FinetuneConfig, TrainingConfig
from edge_transfer.train.fit import compile_model
from edge_transfer.train.training_data import Source

# Without a source head, the linear probe trains on the features of at most this many source
# training images (a fixed stratified sample): bounded time and memory on a large source.
PROBE_SAMPLES = 5000


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(inference.predict(model, x), axis=1) == y))


def _split_accuracy(model: Any, split: Dataset, pre: Preprocessing, batch_size: int) -> float:
    outputs = inference.predict_split(model, split, pre, batch_size)
    return float(np.mean(np.argmax(outputs, axis=1) == split.y))


def accuracies(model: Any, splits: Splits, pre: Preprocessing,
               cfg: TrainingConfig) -> RunMetrics:
    """Train accuracy, val accuracy (on the fixed stratified subset early stopping used,
    ``val_samples`` images), test accuracy on the whole test split (each split streamed), and
    the test split's top-1 per sample (encoded, see :mod:`edge_transfer.core.samples`) so that test
    figures can be compared pair by pair."""
    from edge_transfer.core.samples import encode

    batch_size = cfg.eval_batch_size
    val = stratified_sample(splits.val, cfg.eval_samples, cfg.seed)
    train_accuracy = _split_accuracy(model, splits.train, pre, batch_size)
    val_accuracy = _split_accuracy(model, val, pre, batch_size)
    top1 = np.argmax(inference.predict_split(model, splits.test, pre, batch_size), axis=1)
    return RunMetrics(train_accuracy=train_accuracy, val_accuracy=val_accuracy,
                      val_samples=len(val), test_accuracy=float(np.mean(top1 == splits.test.y)),
                      test_samples=len(splits.test), test_predictions=encode(top1))


def source_before(cfg: FinetuneConfig, keras: Any, source: Source,
                  backbone: backbones.Backbone, features: Any) -> Any:
    """Source-task accuracy of the starting extractor + its source head on a fixed
    stratified subset of the source test split (``--source-samples``); returns a function
    that adds the same images' accuracy after fine-tuning to the metrics (a paired figure)."""
    from edge_transfer.train.models import load_keras_model

    pre = backbone.preprocessing
    test = stratified_sample(source.splits.test, cfg.source_samples, cfg.seed)
    batch = cfg.eval_batch_size
    if source.head_file is not None:
        head = load_keras_model(source.head_file)
    else:
        train = stratified_sample(source.splits.train, PROBE_SAMPLES, cfg.seed)
        head = _probe_head(cfg, keras, inference.predict_split(features, train, pre, batch),
                           train.y, train.num_classes)
    before = _accuracy(head, inference.predict_split(features, test, pre, batch), test.y)

    def after(features_now: Any, metrics: RunMetrics) -> RunMetrics:
        return replace(metrics, source_accuracy_before=before,
                       source_accuracy_after=_accuracy(
                           head, inference.predict_split(features_now, test, pre, batch), test.y),
                       source_samples=len(test),
                       source_head="pretrain" if source.head_file else "linear-probe")

    return after


def _probe_head(cfg: FinetuneConfig, keras: Any, features: np.ndarray, y: np.ndarray,
                classes: int) -> Any:
    """A softmax classifier on frozen features (when the backbone has no source head)."""
    keras.utils.set_random_seed(cfg.seed)
    head = keras.Sequential([keras.Input(features.shape[1:]),
                             keras.layers.Dense(classes, activation="softmax")])
    compile_model(keras, head, 1e-2)
    head.fit(features, y, epochs=100, batch_size=64, verbose=0)
    return head

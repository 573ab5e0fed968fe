"""Pretrain a feature extractor on a source task, then fine-tune it on a small target task.

``pretrain``: extractor + temporary head trained on the source data; the run directory keeps
``extractor.keras`` (what ``finetune --backbone RUN`` starts from), ``source_head.keras``
(for the forgetting figure), and the full source classifier as a regular run.

``finetune``: stage 1 trains a new head with the extractor frozen; stage 2 unfreezes the top
N weight layers (or all) at a tenth of the learning rate with BatchNorm kept in inference
mode; both stop early on validation loss and restore the best weights. Optional: L2-SP,
source accuracy before/after, and a from-scratch baseline with the same data and budget.

The jobs around them live beside this module: the options (:mod:`~edge_transfer.train.config`),
the data a run reads (``training_data``), TensorFlow's set-up (``distribute``), the fit loop
(``fit``), the figures (``evaluate``, on ``inference``), what is printed (``messages``) and
the run directory written (``run_writer``).

Not run as a doctest (it trains for a minute; tests/test_transfer.py does):

>>> src = pretrain(PretrainConfig(data="digits:0-4", out=Path("runs/source")))  # doctest: +SKIP
>>> run = finetune(FinetuneConfig(data="digits:5-9", out=Path("runs/target"),
...                               backbone=str(src), shots=10))                 # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records.run import RunMetrics
from edge_transfer.data.dataset import Dataset, Splits
from edge_transfer.train import backbones
from edge_transfer.train.config import BASELINES as BASELINES
from edge_transfer.train.config import MIXED_PRECISIONS as MIXED_PRECISIONS
from edge_transfer.train.config import STRATEGIES as STRATEGIES
from edge_transfer.train.config import FinetuneConfig, PretrainConfig, TrainingConfig
from edge_transfer.train.distribute import training_context
from edge_transfer.train.evaluate import PROBE_SAMPLES as PROBE_SAMPLES
from edge_transfer.train.evaluate import accuracies, source_before
from edge_transfer.train.fit import MIN_STEPS_PER_EPOCH as MIN_STEPS_PER_EPOCH
from edge_transfer.train.fit import (
    Timer,
    add_l2sp,
    compile_model,
    fit,
    recompute_batchnorm,
    scratch_model,
    unfreeze,
)
from edge_transfer.train.health import chance_warning as chance_warning
from edge_transfer.train.health import untrained_warning as untrained_warning
from edge_transfer.train.inference import predict as predict
from edge_transfer.train.inference import predict_split as predict_split
from edge_transfer.train.messages import health_line as health_line
from edge_transfer.train.messages import input_note, print_warnings, say, summary_line
from edge_transfer.train.run_writer import keep_memory, output_dir, save_model, write_run
from edge_transfer.train.runs import SOURCE_HEAD_FILE
from edge_transfer.train.training_data import load_data, load_source


def pretrain(cfg: PretrainConfig) -> Path:
    """Train ``cfg.backbone`` + a temporary head on ``cfg.data``; write the run directory."""
    started = time.time()
    timer = Timer()
    with timer.phase("data"):
        dataset, splits = load_data(cfg, cfg.data, cfg.shots)
    with training_context(cfg) as (_, keras, strategy):
        with strategy.scope():
            backbone = _backbone(cfg, dataset)
            pre = backbone.preprocessing
            from edge_transfer.train.models import add_head, head_model, set_batchnorm

            # Every BatchNorm layer trains here, whatever the extractor's origin (a name, a
            # .keras file, a run): a low momentum keeps its statistics near the data.
            set_batchnorm(backbone.extractor, momentum=backbones.SCRATCH_BN_MOMENTUM,
                          trainable=True)
            model = add_head(backbone.extractor, dataset.num_classes, cfg.dropout)
            compile_model(keras, model, cfg.learning_rate)
        say(cfg, f"pretrain: {backbone.name} on {cfg.data} ({len(splits.train)} train images)")
        noted = input_note(cfg, backbone)
        history = fit(cfg, keras, model, splits, pre, cfg.epochs, cfg.seed, timer)
        recompute_batchnorm(cfg, model, splits, pre)
        with strategy.scope():
            head = head_model(model, backbone.extractor)
        with timer.phase("evaluation"):
            metrics = accuracies(model, splits, pre, cfg)
        warnings = noted + print_warnings(history, metrics, splits, model, cfg.learning_rate)
        with output_dir(cfg.out, strategy) as out:
            save_model(backbone.extractor, out / backbones.EXTRACTOR_FILE)
            save_model(head, out / SOURCE_HEAD_FILE)
            write_run(out, "pretrain", cfg, dataset, splits, pre, backbone, model,
                      {"pretrain": history}, metrics, time.time() - started, strategy,
                      warnings, timer)
    return cfg.out


def finetune(cfg: FinetuneConfig) -> Path:
    """Fine-tune ``cfg.backbone`` on ``cfg.data``; write the run directory (see runs.py)."""
    started = time.time()
    timer = Timer()
    with timer.phase("data"):
        dataset, splits = load_data(cfg, cfg.data, cfg.shots)
        source = load_source(cfg) if cfg.source_data else None
    with training_context(cfg) as (_, keras, strategy):
        start = _start(cfg, keras, strategy, dataset)
        with timer.phase("evaluation"):
            source_eval = (source_before(cfg, keras, source, start.backbone, start.features)
                           if source else None)
        noted = input_note(cfg, start.backbone)
        history = {"head": _head_stage(cfg, keras, strategy, start, splits, timer)}
        if cfg.finetune_epochs > 0:
            history["finetune"] = _finetune_stage(cfg, keras, strategy, start, splits, timer)
        metrics = _final_metrics(cfg, start, splits, timer, source_eval)
        if cfg.baseline == "scratch":
            history["scratch"], metrics = _scratch_baseline(cfg, keras, strategy, start, splits,
                                                            timer, metrics)
        warnings = noted + _finetune_warnings(cfg, history, metrics, splits, start.model)
        seconds = time.time() - started
        with output_dir(cfg.out, strategy) as out:
            write_run(out, "finetune", cfg, dataset, splits, start.pre, start.backbone,
                      start.model, history, metrics, seconds, strategy, warnings, timer)
            keep_memory(out, start.model, splits.train, start.pre, cfg)
    return cfg.out


@dataclass(frozen=True)
class _Start:
    """What ``finetune`` trains: the backbone (its ``extractor`` and preprocessing ``pre``),
    the extractor with a new head (``model``), the extractor alone on the model's inputs
    (``features``), the number of classes, and whether BatchNorm trains (only in an
    extractor that is untrained)."""

    backbone: backbones.Backbone
    extractor: Any
    pre: Preprocessing
    model: Any
    features: Any
    classes: int
    bn_trainable: bool


def _backbone(cfg: TrainingConfig, dataset: Dataset) -> backbones.Backbone:
    return backbones.resolve(cfg.backbone, dataset.x.image_shape, weights=cfg.weights,
                             input_size=cfg.input_size, width=cfg.width,
                             cut_layer=cfg.cut_layer, unsafe_load=cfg.unsafe_load,
                             input_range=cfg.input_range)


def _start(cfg: FinetuneConfig, keras: Any, strategy: Any, dataset: Dataset) -> _Start:
    """The backbone with a new head, built in the strategy's scope."""
    from edge_transfer.train.models import add_head, set_batchnorm

    with strategy.scope():
        backbone = _backbone(cfg, dataset)
        extractor = backbone.extractor
        bn_trainable = not backbone.pretrained
        set_batchnorm(extractor, trainable=bn_trainable,
                      momentum=backbones.SCRATCH_BN_MOMENTUM if bn_trainable else None)
        model = add_head(extractor, dataset.num_classes, cfg.dropout)
        features = keras.Model(model.inputs, extractor.outputs, name="features")
    return _Start(backbone, extractor, backbone.preprocessing, model, features,
                  dataset.num_classes, bn_trainable)


def _head_stage(cfg: FinetuneConfig, keras: Any, strategy: Any, start: _Start, splits: Splits,
                timer: Timer) -> dict[str, list[float]]:
    """Stage 1: the new head trains on the frozen extractor; its history."""
    say(cfg, f"finetune stage 1: head only, {start.backbone.name} frozen "
             f"({len(splits.train)} train images, {start.classes} classes)")
    for layer in start.extractor.layers:
        layer.trainable = False
    with strategy.scope():
        compile_model(keras, start.model, cfg.learning_rate)
    return fit(cfg, keras, start.model, splits, start.pre, cfg.epochs, cfg.seed, timer,
               frozen=(start.extractor, start.features))


def _finetune_stage(cfg: FinetuneConfig, keras: Any, strategy: Any, start: _Start,
                    splits: Splits, timer: Timer) -> dict[str, list[float]]:
    """Stage 2: the top ``--unfreeze`` extractor layers train too, at the lower learning rate
    (with L2-SP when asked); its history."""
    unfrozen = unfreeze(start.extractor, cfg.unfreeze, start.bn_trainable)
    say(cfg, f"finetune stage 2: {unfrozen} extractor layers unfrozen, learning rate "
             f"{cfg.learning_rate * cfg.finetune_lr_factor:g}"
             + (f", L2-SP {cfg.l2sp:g}" if cfg.l2sp else ""))
    with strategy.scope():
        if cfg.l2sp > 0:
            add_l2sp(start.model, start.extractor, cfg.l2sp)
        compile_model(keras, start.model, cfg.learning_rate * cfg.finetune_lr_factor)
    history = fit(cfg, keras, start.model, splits, start.pre, cfg.finetune_epochs, cfg.seed + 1,
                  timer)
    if start.bn_trainable:
        recompute_batchnorm(cfg, start.model, splits, start.pre)
    return history


def _final_metrics(cfg: FinetuneConfig, start: _Start, splits: Splits, timer: Timer,
                   source_eval: Any) -> RunMetrics:
    """The fine-tuned model's figures, the source task's after (when measured before) and the
    L2-SP penalty."""
    with timer.phase("evaluation"):
        metrics = accuracies(start.model, splits, start.pre, cfg)
        if source_eval is not None:
            metrics = source_eval(start.features, metrics)
    return replace(metrics, l2sp_penalty=float(sum(float(loss) for loss in start.model.losses)))


def _scratch_baseline(cfg: FinetuneConfig, keras: Any, strategy: Any, start: _Start,
                      splits: Splits, timer: Timer,
                      metrics: RunMetrics) -> tuple[dict[str, list[float]], RunMetrics]:
    """The same architecture from random weights, on the same data and epoch budget: its
    history, and ``metrics`` with its figures."""
    with strategy.scope():
        scratch = scratch_model(keras, start.extractor, start.classes, cfg)
    say(cfg, "baseline: the same architecture from random weights")
    budget = cfg.epochs + cfg.finetune_epochs
    history = fit(cfg, keras, scratch, splits, start.pre, budget, cfg.seed + 2, timer)
    recompute_batchnorm(cfg, scratch, splits, start.pre)
    with timer.phase("evaluation"):
        scratch_acc = accuracies(scratch, splits, start.pre, cfg)
    return history, replace(metrics, scratch_test_accuracy=scratch_acc.test_accuracy,
                            scratch_val_accuracy=scratch_acc.val_accuracy,
                            scratch_test_predictions=scratch_acc.test_predictions)


def _finetune_warnings(cfg: FinetuneConfig, history: dict[str, dict[str, list[float]]],
                       metrics: RunMetrics, splits: Splits, model: Any) -> list[str]:
    """The health warnings of the kept model (stage 2's history, else stage 1's), every
    stage's validation curve considered."""
    stages = {"stage 1 (head)": history["head"], "stage 2": history.get("finetune", {})}
    return print_warnings(history.get("finetune") or history["head"], metrics, splits, model,
                          cfg.learning_rate, stages)


# The ``X as X`` imports above keep the names this module had before its jobs moved out (issue
# 23) importable from here for one release, as edge_transfer.transfer's old users import them.
__all__ = ["FinetuneConfig", "PretrainConfig", "TrainingConfig", "finetune", "pretrain",
           "summary_line"]

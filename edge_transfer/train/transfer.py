"""Pretrain a feature extractor on a source task, then fine-tune it on a small target task.

``pretrain``: extractor + temporary head trained on the source data; the run directory keeps
``extractor.keras`` (what ``finetune --backbone RUN`` starts from), ``source_head.keras``
(for the forgetting figure), and the full source classifier as a regular run.

``finetune``: stage 1 trains a new head with the extractor frozen; stage 2 unfreezes the top
N weight layers (or all) at a tenth of the learning rate with BatchNorm kept in inference
mode; both stop early on validation loss and restore the best weights. Optional: L2-SP,
source accuracy before/after, and a from-scratch baseline with the same data and budget.

Not run as a doctest (it trains for a minute; tests/test_transfer.py does):

>>> src = pretrain(PretrainConfig(data="digits:0-4", out=Path("runs/source")))  # doctest: +SKIP
>>> run = finetune(FinetuneConfig(data="digits:5-9", out=Path("runs/target"),
...                               backbone=str(src), shots=10))                 # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import InitVar, asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.atomic import write_text_atomic
from edge_transfer.core.errors import ConfigError
from edge_transfer.core.fields import option, renamed, required
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records.run import (
    RunBackbone,
    RunData,
    RunInfo,
    RunMetrics,
    RunStrategy,
    SplitSizes,
)
from edge_transfer.data import sources
from edge_transfer.data.dataset import Dataset, Splits, split_dataset, stratified_sample
from edge_transfer.data.load import absolute_spec, load_dataset
from edge_transfer.train import backbones
from edge_transfer.train.health import chance_warning, untrained_warning  # noqa: F401 (public names)
from edge_transfer.train.input_range import INPUT_RANGES
from edge_transfer.train.runs import (
    HISTORY_FILE,
    LABELS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    RUN_FILE,
    versions,
    write_json,
)

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
MIXED_PRECISIONS = ("auto", "float32", "mixed_float16")
BASELINES = ("scratch",)
SOURCE_HEAD_FILE = "source_head.keras"
# Few-shot data makes one-batch epochs: an epoch is at least this many steps (data repeated),
# so that early stopping and the epoch budget mean the same on 50 images as on 5,000.
MIN_STEPS_PER_EPOCH = 10
# Without a source head, the linear probe trains on the features of at most this many source
# training images (a fixed stratified sample): bounded time and memory on a large source.
PROBE_SAMPLES = 5000


@dataclass(frozen=True)
class TrainingConfig:
    """Options shared by pretrain and finetune (see ``edge-transfer finetune --help``);
    checked on construction (bad values raise :class:`~edge_transfer.core.errors.ConfigError`).

    >>> TrainingConfig(data="digits", out=Path("run"), dropout=1.5)
    Traceback (most recent call last):
    ...
    edge_transfer.core.errors.ConfigError: --dropout must be in [0, 1), got 1.5
    """

    data: str = required(sources.help_text(), metavar="SPEC")
    out: Path = required("run directory to write (created; files in it are replaced)",
                         metavar="RUN")
    backbone: str = option(
        "small-cnn",
        "feature extractor: small-cnn (fast on a CPU, any input size), pixels (no learned "
        "features: a linear baseline), or any "
        "keras.applications model by a lower-case name (mobilenet_v2, mobilenet_v3_small, "
        "efficientnet_b0, efficientnet_v2_b0, convnext_tiny, regnetx_002, densenet121, "
        "resnet50_v2, ...; `edge-transfer backbones` lists them all); or the --out folder of a "
        "pretrain run (its extractor.keras); or a .keras file cut at --cut-layer",
        metavar="NAME|RUN|FILE")
    weights: str | None = option(
        None, "starting weights of a named backbone: imagenet (Keras' download cache), none "
              "(random) or a weights file saved from the same backbone (default: imagenet for "
              "keras.applications, none for small-cnn)", metavar="imagenet|none|PATH")
    input_size: int | None = option(
        None, "square input side in pixels (default: 224 for keras.applications, the data's "
              "own size for small-cnn); images are resized to it", metavar="PX")
    width: float = option(1.0, "width multiplier (MobileNet alpha; small-cnn filters)",
                           metavar="ALPHA")
    cut_layer: str | None = option(
        None, "with a .keras backbone file: the layer whose output is the features (default: "
              "the layer before the last)", metavar="NAME")
    input_range: str = option(
        "auto", "the pixel range the backbone is fed: auto (0..255 when its first layers "
                "scale pixels themselves, as keras.applications' Rescaling/Normalization do; "
                "else its preprocessing.json, the registry's range, or pixels / 255), raw "
                "(0..255), unit (pixels / 255: 0..1) or symmetric (pixels / 127.5 - 1: -1..1); "
                "the choice is printed and written to preprocessing.json",
        choices=INPUT_RANGES)
    unsafe_load: bool = option(False, "allow Lambda layers (arbitrary code) in a backbone "
                                       "file you trust", aliases=("--unsafe",))
    epochs: int = option(40, "maximum epochs; early stopping usually ends sooner")
    batch_size: int = option(32, "global batch size")
    learning_rate: float = option(1e-3, "Adam learning rate")
    patience: int = option(8, "epochs without a better validation loss before stopping; the "
                               "best weights are restored")
    dropout: float = option(0.2, "dropout before the classifier")
    seed: int = option(0, "seed of the split, the weights and the shuffling; the same seed "
                           "gives the same run on a CPU")
    val_fraction: float = option(0.15, "fraction of each class for validation")
    test_fraction: float = option(0.25, "fraction of each class held out for the test")
    shots: int | None = option(None, "keep only K training images per class (the "
                                      "limited-data case); validation and test keep their "
                                      "full size", metavar="K")
    val_data: str | None = option(None, "data used as the validation split (the same class "
                                        "names as --data)", metavar="SPEC")
    test_data: str | None = option(None, "data used as the test split (the same class names "
                                         "as --data)", metavar="SPEC")
    cache: Path | None = option(None, "keep the decoded training images of large data in "
                                      "files under DIR (small splits are cached in memory "
                                      "anyway)", metavar="DIR")
    eval_samples: int = option(300, "validation images (a fixed stratified subset) evaluated "
                                    "each epoch for early stopping, and for the final "
                                    "validation accuracy (raise it for many classes); test "
                                    "figures use the whole test split", metavar="N")
    eval_batch_size: int = option(256, "batch size of evaluation passes", metavar="N")
    augment: bool = option(False, "random shifts, zooms and small rotations of training "
                                   "images")
    flip: bool = option(False, "random left-right flips of training images (for photos and "
                                "clothing; not for digits or text, which a mirror changes)")
    skip_bad_files: bool = option(False, "skip unreadable images in a folder instead of "
                                          "stopping")
    strategy: str = option(
        "auto", "tf.distribute strategy: auto (mirrored over several GPUs, else default), "
                "default (one device), mirrored (all GPUs, or all logical CPUs), multiworker "
                "(processes described by TF_CONFIG; the chief writes the run)",
        choices=STRATEGIES)
    mixed_precision: str = option(
        "auto", "Keras mixed-precision policy while training: auto is mixed_float16 on a GPU, "
                "float32 otherwise; the output layer stays float32",
        choices=MIXED_PRECISIONS, aliases=("--precision",))
    cpu_devices: int | None = option(None, "split the CPU into N logical devices (to try "
                                            "--strategy mirrored without GPUs)", metavar="N")
    verbose: int = 1                    # 0 silent, 1 progress bars, 2 one line per epoch
    # Old names of mixed_precision and unsafe_load, accepted for one release (hidden, like
    # --precision and --unsafe).
    precision: InitVar[str | None] = None
    unsafe: InitVar[bool | None] = None

    @property
    def augmentations(self) -> tuple[str, ...]:
        """The names of the random changes applied to training images (``tfdata``'s).

        >>> TrainingConfig(data="digits", out=Path("run"), flip=True).augmentations
        ('flip',)
        """
        return tuple(name for name, on in (("shift", self.augment), ("flip", self.flip)) if on)

    def __post_init__(self, precision: str | None, unsafe: bool | None) -> None:
        """Refuse bad options before anything heavy runs."""
        renamed(self, "precision", "mixed_precision", precision)
        renamed(self, "unsafe", "unsafe_load", unsafe)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy {self.strategy} is unknown; use "
                              f"{'|'.join(STRATEGIES)}")
        if self.input_range not in INPUT_RANGES:
            raise ConfigError(f"--input-range {self.input_range} is unknown; use "
                              f"{'|'.join(INPUT_RANGES)}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ConfigError(f"--mixed-precision {self.mixed_precision} is unknown; use "
                              f"{'|'.join(MIXED_PRECISIONS)}")
        for name in ("epochs", "batch_size", "patience", "eval_samples", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.learning_rate > 0:
            raise ConfigError("--learning-rate must be positive")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.cpu_devices is not None and self.cpu_devices < 1:
            raise ConfigError("--cpu-devices must be at least 1")
        if self.strategy == "multiworker" and not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy multiworker needs TF_CONFIG (cluster and task) set "
                              "in each worker's environment")
        path = Path(self.backbone)
        if not path.exists():
            backbones.check_options(self.backbone, self.input_size, self.width,
                                    self.weights or backbones.default_weights(self.backbone))
        elif path.is_file():  # a damaged model file fails here, before TensorFlow loads
            from edge_transfer.train.models import check_model_file

            check_model_file(path, self.unsafe_load)
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a file; give a folder")


@dataclass(frozen=True)
class PretrainConfig(TrainingConfig):
    """Train an extractor with a temporary head on the source task."""

    epochs: int = option(60, "maximum epochs; early stopping usually ends sooner")


@dataclass(frozen=True)
class FinetuneConfig(TrainingConfig):
    """Head on the frozen extractor, then fine-tune the top layers at a lower learning rate."""

    epochs: int = option(40, "maximum epochs of the head stage; early stopping usually ends "
                              "sooner")
    finetune_epochs: int = option(40, "maximum epochs of stage 2; 0 keeps the extractor "
                                       "frozen")
    finetune_lr_factor: float = option(0.1, "stage 2 learning rate = --learning-rate x this")
    unfreeze: int | None = option(None, "stage 2 trains the top N weight layers of the "
                                         "extractor, or all (default: all)", metavar="N|all")
    l2sp: float = option(0.0, "L2-SP: add ALPHA x squared distance of the extractor's kernels "
                               "from their starting values to the loss, to keep source "
                               "knowledge (0: off)", metavar="ALPHA")
    source_data: str | None = option(
        None, "also measure source-task test accuracy before and after fine-tuning (the "
              "forgetting figure), with the pretrain run's source head, or a linear probe "
              "trained on the frozen start", metavar="SPEC")
    source_samples: int = option(
        1000, "source-task test images (a fixed stratified subset, seeded; the whole split "
              "when smaller) the source accuracy before and after is measured on, the same "
              "images both times", metavar="N")
    baseline: str | None = option(
        None, "scratch: also train the same architecture from random weights on the same data "
              "and epoch budget -> scratch_test_accuracy", choices=BASELINES)
    memory: int = option(20, "feature vectors kept per class (herding, no pixels) in "
                             "RUN/memory.npz, for `edge-transfer extend` (0: none)",
                         metavar="N")

    def __post_init__(self, precision: str | None, unsafe: bool | None) -> None:
        super().__post_init__(precision, unsafe)
        if self.finetune_epochs < 0:
            raise ConfigError("--finetune-epochs must be 0 or more")
        if not self.finetune_lr_factor > 0:
            raise ConfigError("--finetune-lr-factor must be positive")
        if self.unfreeze is not None and self.unfreeze < 0:
            raise ConfigError("--unfreeze must be a number of layers >= 0, or all")
        if self.l2sp < 0:
            raise ConfigError("--l2sp must be 0 or more")
        if self.source_samples < 1:
            raise ConfigError("--source-samples must be at least 1")
        if self.memory < 0:
            raise ConfigError(f"--memory must be 0 or more, got {self.memory}")
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ConfigError(f"--baseline {self.baseline} is unknown; use "
                              f"{'|'.join(BASELINES)}")


# ----------------------------------------------------------------------------- public API


def pretrain(cfg: PretrainConfig) -> Path:
    """Train ``cfg.backbone`` + a temporary head on ``cfg.data``; write the run directory."""
    started = time.time()
    timer = _Timer()
    with timer.phase("data"):
        dataset, splits = _load_data(cfg, cfg.data, cfg.shots)
    with _training_context(cfg) as (_, keras, strategy):
        with strategy.scope():
            backbone = _backbone(cfg, dataset)
            pre = backbone.preprocessing
            from edge_transfer.train.models import add_head, head_model, set_batchnorm

            # Every BatchNorm layer trains here, whatever the extractor's origin (a name, a
            # .keras file, a run): a low momentum keeps its statistics near the data.
            set_batchnorm(backbone.extractor, momentum=backbones.SCRATCH_BN_MOMENTUM,
                          trainable=True)
            model = add_head(backbone.extractor, dataset.num_classes, cfg.dropout)
            _compile(keras, model, cfg.learning_rate)
        _say(cfg, f"pretrain: {backbone.name} on {cfg.data} ({len(splits.train)} train images)")
        noted = _input_note(cfg, backbone)
        history = _fit(cfg, keras, model, splits, pre, cfg.epochs, cfg.seed, timer)
        _recompute_batchnorm(cfg, model, splits, pre)
        with strategy.scope():
            head = head_model(model, backbone.extractor)
        with timer.phase("evaluation"):
            metrics = _accuracies(model, splits, pre, cfg)
        warnings = noted + _chance_warnings(history, metrics, splits, model, cfg.learning_rate)
        out, cleanup = _output_dir(cfg.out, strategy)
        try:
            _save_model(backbone.extractor, out / backbones.EXTRACTOR_FILE)
            _save_model(head, out / SOURCE_HEAD_FILE)
            _write_run(out, "pretrain", cfg, dataset, splits, pre, backbone, model,
                       {"pretrain": history}, metrics, time.time() - started, strategy,
                       warnings, timer)
        finally:
            cleanup()
    return cfg.out


def finetune(cfg: FinetuneConfig) -> Path:
    """Fine-tune ``cfg.backbone`` on ``cfg.data``; write the run directory (see runs.py)."""
    started = time.time()
    timer = _Timer()
    with timer.phase("data"):
        dataset, splits = _load_data(cfg, cfg.data, cfg.shots)
        source = _load_source(cfg) if cfg.source_data else None
    with _training_context(cfg) as (_, keras, strategy):
        from edge_transfer.train.models import add_head, set_batchnorm

        with strategy.scope():
            backbone = _backbone(cfg, dataset)
            extractor = backbone.extractor
            pre = backbone.preprocessing
            bn_trainable = not backbone.pretrained
            set_batchnorm(extractor, trainable=bn_trainable,
                          momentum=backbones.SCRATCH_BN_MOMENTUM if bn_trainable else None)
            model = add_head(extractor, dataset.num_classes, cfg.dropout)
            features = keras.Model(model.inputs, extractor.outputs, name="features")
        with timer.phase("evaluation"):
            source_eval = (_source_before(cfg, keras, source, backbone, features)
                           if source else None)

        noted = _input_note(cfg, backbone)
        _say(cfg, f"finetune stage 1: head only, {backbone.name} frozen "
                  f"({len(splits.train)} train images, {dataset.num_classes} classes)")
        for layer in extractor.layers:
            layer.trainable = False
        with strategy.scope():
            _compile(keras, model, cfg.learning_rate)
        history = {"head": _fit(cfg, keras, model, splits, pre, cfg.epochs, cfg.seed, timer,
                                frozen=(extractor, features))}

        if cfg.finetune_epochs > 0:
            unfrozen = _unfreeze(extractor, cfg.unfreeze, bn_trainable)
            _say(cfg, f"finetune stage 2: {unfrozen} extractor layers unfrozen, learning rate "
                      f"{cfg.learning_rate * cfg.finetune_lr_factor:g}"
                      + (f", L2-SP {cfg.l2sp:g}" if cfg.l2sp else ""))
            with strategy.scope():
                if cfg.l2sp > 0:
                    _add_l2sp(model, extractor, cfg.l2sp)
                _compile(keras, model, cfg.learning_rate * cfg.finetune_lr_factor)
            history["finetune"] = _fit(cfg, keras, model, splits, pre, cfg.finetune_epochs,
                                       cfg.seed + 1, timer)
            if bn_trainable:
                _recompute_batchnorm(cfg, model, splits, pre)
        with timer.phase("evaluation"):
            metrics = _accuracies(model, splits, pre, cfg)
            if source_eval is not None:
                metrics = source_eval(features, metrics)
        metrics = replace(metrics,
                          l2sp_penalty=float(sum(float(loss) for loss in model.losses)))
        if cfg.baseline == "scratch":
            with strategy.scope():
                scratch = _scratch_model(keras, extractor, dataset.num_classes, cfg)
            _say(cfg, "baseline: the same architecture from random weights")
            budget = cfg.epochs + cfg.finetune_epochs
            history["scratch"] = _fit(cfg, keras, scratch, splits, pre, budget, cfg.seed + 2,
                                      timer)
            _recompute_batchnorm(cfg, scratch, splits, pre)
            with timer.phase("evaluation"):
                scratch_acc = _accuracies(scratch, splits, pre, cfg)
            metrics = replace(metrics, scratch_test_accuracy=scratch_acc.test_accuracy,
                              scratch_val_accuracy=scratch_acc.val_accuracy,
                              scratch_test_predictions=scratch_acc.test_predictions)
        stages = {"stage 1 (head)": history["head"], "stage 2": history.get("finetune", {})}
        warnings = noted + _chance_warnings(history.get("finetune") or history["head"], metrics,
                                            splits, model, cfg.learning_rate, stages)
        seconds = time.time() - started
        out, cleanup = _output_dir(cfg.out, strategy)
        try:
            _write_run(out, "finetune", cfg, dataset, splits, pre, backbone, model, history,
                       metrics, seconds, strategy, warnings, timer)
            _keep_memory(out, model, splits.train, pre, cfg)
        finally:
            cleanup()
    return cfg.out


def _keep_memory(out: Path, model: Any, train: Dataset, pre: Preprocessing,
                 cfg: FinetuneConfig) -> None:
    """Keep the training features' class statistics (``out/class_stats.npz``,
    :mod:`edge_transfer.train.class_stats`) and herd ``cfg.memory`` feature vectors per class (the
    classifier's input) into ``out/memory.npz``, for a later ``extend``
    (:mod:`edge_transfer.train.memory`)."""
    from edge_transfer.train.class_stats import ClassStatistics
    from edge_transfer.train.memory import build_memory, extractor_digest, features_model

    features = features_model(model)
    digest = extractor_digest(features)
    x = predict_split(features, train, pre, cfg.eval_batch_size).astype(np.float32)
    ClassStatistics.of(x, train.y, train.class_names, digest).save(out)
    if cfg.memory > 0:
        build_memory(x, train.y, train.class_names, cfg.memory, digest).save(out)


def summary_line(run_dir: Path) -> str:
    """One line: what was trained, its accuracies and where it went."""
    run_dir = Path(run_dir)
    if not (run_dir / METRICS_FILE).is_file():
        return "this worker is done; the chief worker wrote the run directory"
    from edge_transfer.core import stats

    m = RunMetrics.load(run_dir)
    test = f"test accuracy {_figure(m.test_accuracy)}"
    if m.test_samples and m.test_accuracy is not None:
        iv = stats.wilson(round(m.test_accuracy * m.test_samples), m.test_samples)
        test += f" [{iv.low:.3f}, {iv.high:.3f}] on {m.test_samples}"
    parts = [test, f"val {_figure(m.val_accuracy)}"]
    if m.scratch_test_accuracy is not None:
        parts.append(f"scratch baseline {m.scratch_test_accuracy:.3f}")
    if m.source_accuracy_before is not None:
        parts.append(f"source {m.source_accuracy_before:.3f} -> "
                     f"{_figure(m.source_accuracy_after)}")
    seconds = RunInfo.load(run_dir).seconds or 0.0
    return f"{', '.join(parts)} in {seconds:.0f} s -> {run_dir}"


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# ----------------------------------------------------------------------------- data


def _data_image_size(cfg: TrainingConfig) -> tuple[int, int] | None:
    """The size image folders are decoded at: the backbone's input, else the first image's."""
    path = Path(cfg.backbone)
    pre_file = (path if path.is_dir() else path.parent) / PREPROCESSING_FILE
    if path.exists() and pre_file.is_file():
        pre = Preprocessing.load(pre_file)
        return (pre.height, pre.width)
    if cfg.input_size:
        return (cfg.input_size, cfg.input_size)
    if not path.exists() and backbones.get(cfg.backbone).default_size:
        size = backbones.get(cfg.backbone).default_size
        return (size, size) if size else None
    return None


def health_line(run_dir: Path, what: str = "the model") -> str | None:
    """One line when the run's model is at chance on its test split, or predicts one class
    for >= 90% of it (see :func:`edge_transfer.core.stats.health_warning`); None otherwise."""
    from edge_transfer.core import stats
    from edge_transfer.core.samples import decode_or_none

    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    m = RunMetrics.load(path)
    labels = _labels(Path(run_dir))
    if not m.test_samples or not labels or m.test_accuracy is None:
        return None
    return stats.health_of(m.test_accuracy, m.test_samples, len(labels),
                           decode_or_none(m.test_predictions), labels, what=what)


def _labels(run_dir: Path) -> list[str]:
    path = run_dir / LABELS_FILE
    return path.read_text().splitlines() if path.is_file() else []


def _load_data(cfg: TrainingConfig, spec: str, shots: int | None) -> tuple[Dataset, Splits]:
    dataset = load_dataset(spec, image_size=_data_image_size(cfg),
                           skip_bad_files=cfg.skip_bad_files, val_data=cfg.val_data,
                           test_data=cfg.test_data)
    splits = split_dataset(dataset, seed=cfg.seed, val_fraction=cfg.val_fraction,
                           test_fraction=cfg.test_fraction, shots=shots)
    return dataset, splits


@dataclass(frozen=True)
class _Source:
    splits: Splits
    head_file: Path | None              # the pretrain's own source head, when it matches


def _load_source(cfg: FinetuneConfig) -> _Source:
    """The source task's splits: the pretrain run's own split when the backbone is one."""
    assert cfg.source_data is not None
    run_file = Path(cfg.backbone) / RUN_FILE
    seed, val, test, head = cfg.seed, cfg.val_fraction, cfg.test_fraction, None
    if run_file.is_file():
        info = RunInfo.load(run_file)
        if info.data.spec == cfg.source_data and info.command == "pretrain":
            seed, val, test = info.data.seed, info.data.val_fraction, info.data.test_fraction
            head = Path(cfg.backbone) / SOURCE_HEAD_FILE
    dataset = load_dataset(cfg.source_data, image_size=_data_image_size(cfg),
                           skip_bad_files=cfg.skip_bad_files)
    splits = split_dataset(dataset, seed=seed, val_fraction=val, test_fraction=test)
    return _Source(splits, head if head is not None and head.is_file() else None)


# ----------------------------------------------------------------------------- training


@contextmanager
def _training_context(cfg: TrainingConfig) -> Iterator[tuple[Any, Any, Any]]:
    """TensorFlow with devices, seed, determinism, precision policy and strategy set up."""
    from edge_transfer.core.keras import load

    tf, keras = load()
    if cfg.cpu_devices:
        _split_cpu(tf, cfg.cpu_devices)
    strategy = _strategy(tf, cfg.strategy)
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "mixed_float16" if gpus else "float32"
    if precision == "mixed_float16" and not gpus:
        raise ConfigError("--mixed-precision mixed_float16 needs a GPU (it is slower on a "
                          "CPU); use --mixed-precision float32 or auto")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield tf, keras, strategy
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _split_cpu(tf: Any, count: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:  # already initialised: fine when the split is already there
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise ConfigError("--cpu-devices must be set before TensorFlow starts; run it in a "
                              "fresh process") from None


def _strategy(tf: Any, name: str) -> Any:
    if name == "multiworker":  # first: collectives must be configured before TF starts
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    devices = gpus or tf.config.list_logical_devices("CPU")  # mirrored: all GPUs, or CPUs
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _backbone(cfg: TrainingConfig, dataset: Dataset) -> backbones.Backbone:
    return backbones.resolve(cfg.backbone, dataset.x.image_shape, weights=cfg.weights,
                             input_size=cfg.input_size, width=cfg.width,
                             cut_layer=cfg.cut_layer, unsafe_load=cfg.unsafe_load,
                             input_range=cfg.input_range)


def _input_note(cfg: TrainingConfig, backbone: backbones.Backbone) -> list[str]:
    """Say what the backbone is fed (one line, see :mod:`edge_transfer.train.input_range`); a
    warning when pixels are scaled twice, returned for run.json."""
    decision = backbone.input
    if decision is None:
        return []
    _say(cfg, decision.line())
    if decision.warning is None:
        return []
    print(f"warning: {decision.warning}", file=sys.stderr, flush=True)
    return [decision.warning]


def _compile(keras: Any, model: Any, learning_rate: float) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


class _Timer:
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


def _fit(cfg: TrainingConfig, keras: Any, model: Any, splits: Splits, pre: Preprocessing,
         epochs: int, seed: int, timer: _Timer | None = None,
         frozen: tuple[Any, Any] | None = None) -> dict[str, list[float]]:
    """``model.fit`` with early stopping on the validation loss of a fixed stratified subset
    (``--eval-samples``, the same subset :func:`_accuracies` reports on). ``frozen``
    (extractor, its features model) while the extractor does not train: the subset's
    features are computed once and each epoch runs only the head on them. While BatchNorm
    layers train, their statistics are recomputed before each validation pass
    (:mod:`edge_transfer.train.batchnorm`): the epoch kept is judged on the model then evaluated."""
    from edge_transfer.data.tfdata import from_dataset, reading

    steps = -(-len(splits.train) // cfg.batch_size)
    workers = _workers(model)
    train = from_dataset(splits.train, pre, cfg.batch_size, shuffle=True, seed=seed,
                         augment=cfg.augmentations,
                         repeat=steps < MIN_STEPS_PER_EPOCH or workers is not None,
                         cache_file=_cache_file(cfg, splits.train, pre, "train"),
                         shard=workers)
    subset = stratified_sample(splits.val, cfg.eval_samples, cfg.seed)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                         restore_best_weights=True)
    timer = timer or _Timer()
    val, callbacks = None, [stop, timer.callback(keras)]
    if frozen is not None and workers is None:
        with timer.phase("evaluation"):
            check = _head_validation(keras, model, *frozen, subset, pre, cfg.eval_batch_size,
                                     timer)
        callbacks.insert(0, check)          # before EarlyStopping, which reads its logs
    else:
        val = from_dataset(subset, pre, cfg.eval_batch_size)
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
                     pre: Preprocessing, batch_size: int, timer: _Timer) -> Any:
    """A callback logging ``val_loss`` and ``val_accuracy`` at each epoch's end, as
    ``fit(validation_data=...)`` would, for a model whose extractor is frozen: the subset's
    features are computed once here, then each epoch runs only the head on them (the
    extractor's share of the work is done once instead of every epoch)."""
    from edge_transfer.train.models import head_model

    vectors = predict_split(features, subset, pre, batch_size)
    head = head_model(model, extractor)
    labels = subset.y

    class HeadValidation(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            start = time.perf_counter()
            probs = predict(head, vectors, batch_size)
            loss = np.mean(keras.losses.sparse_categorical_crossentropy(labels, probs))
            loss += sum(float(extra) for extra in model.losses)   # as Keras adds them
            if logs is not None:
                logs["val_loss"] = float(loss)
                logs["val_accuracy"] = float(np.mean(np.argmax(probs, axis=1) == labels))
            spent = time.perf_counter() - start
            timer.seconds["evaluation"] += spent
            timer.seconds["training"] -= spent   # fit's time is counted as training

    return HeadValidation()


def _unfreeze(extractor: Any, top: int | None, bn_trainable: bool) -> int:
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


def _add_l2sp(model: Any, extractor: Any, alpha: float) -> None:
    """Penalise the distance of every trainable extractor kernel from its starting value."""
    from edge_transfer.train.models import l2sp

    for layer in extractor.layers:
        if not layer.trainable:
            continue
        for weight in layer.trainable_weights:
            if "kernel" in weight.name:
                reg = l2sp(alpha, weight.numpy())
                model.add_loss(lambda reg=reg, weight=weight: reg(weight))


def _scratch_model(keras: Any, extractor: Any, num_classes: int, cfg: FinetuneConfig) -> Any:
    """The same extractor architecture with fresh random weights, plus the same head."""
    from edge_transfer.train.models import add_head, set_batchnorm

    keras.utils.set_random_seed(cfg.seed + 2)
    fresh = keras.models.clone_model(extractor)
    set_batchnorm(fresh, momentum=backbones.SCRATCH_BN_MOMENTUM, trainable=True)
    for layer in fresh.layers:
        layer.trainable = True
    model = add_head(fresh, num_classes, cfg.dropout, prefix="scratch_head")
    _compile(keras, model, cfg.learning_rate)
    return model


def _workers(model: Any) -> tuple[int, int] | None:
    """(workers, this worker's index) under a multi-worker strategy, else None."""
    strategy = getattr(model, "distribute_strategy", None)
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None
    spec = resolver.cluster_spec().as_dict()
    tasks = [(kind, i) for kind in ("chief", "worker") for i in range(len(spec.get(kind, [])))]
    if len(tasks) < 2:
        return None
    return len(tasks), tasks.index((resolver.task_type, resolver.task_id))


def _cache_file(cfg: TrainingConfig, split: Dataset, pre: Preprocessing,
                name: str) -> Path | None:
    if cfg.cache is None:
        return None
    shape = "x".join(str(d) for d in split.x.image_shape)
    return Path(cfg.cache) / f"{split.fingerprint()}-{name}-{shape}"


def _recompute_batchnorm(cfg: TrainingConfig, model: Any, splits: Splits,
                         pre: Preprocessing, limit: int = 4096, batch_size: int = 128) -> None:
    """Moving statistics of the BatchNorm layers that trained, recomputed on the training
    images (at most ``limit``) under the final weights (see ``models.recompute_batchnorm``)."""
    from edge_transfer.train.models import recompute_batchnorm

    x = splits.train.x[:limit]
    count = recompute_batchnorm(model, (pre.apply(batch) for batch in x.batches(batch_size)))
    if count:
        _say(cfg, f"BatchNorm: statistics of {count} layers recomputed on "
                  f"{len(x)} training images")


def _chance_warnings(history: dict[str, list[float]], metrics: RunMetrics,
                     splits: Splits, model: Any, learning_rate: float,
                     stages: dict[str, dict[str, list[float]]] | None = None) -> list[str]:
    """The warnings of :func:`edge_transfer.train.health.run_warnings` (the kept epoch's
    ``history``; every stage's per-epoch validation), each printed on stderr."""
    from edge_transfer.train.health import run_warnings
    from edge_transfer.train.models import has_batchnorm

    lines = run_warnings(history, metrics, len(splits.train), len(splits.val),
                         splits.train.num_classes, has_batchnorm(model), learning_rate, stages)
    for line in lines:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    return lines


def predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs in batches, eagerly and locally (no distribution, no collectives)."""
    outputs = [np.asarray(model(x[i:i + batch_size], training=False))
               for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,))


def predict_split(model: Any, split: Dataset, pre: Preprocessing,
                  batch_size: int = 256) -> np.ndarray:
    """Model outputs on a split, read through its stream (decoded in parallel, prefetched),
    eagerly and locally."""
    from edge_transfer.data.tfdata import from_dataset, reading

    call = _inference(model, pre)
    with reading():
        outputs = [np.asarray(call(x)) for x, _ in from_dataset(split, pre, batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,))


_INFERENCE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _inference(model: Any, pre: Preprocessing) -> Any:
    """``model(x, training=False)`` as one traced graph per model (any batch size): several
    times faster than eager calls on a deep backbone; still local (no strategy)."""
    if model not in _INFERENCE:
        from edge_transfer.core.keras import load

        tf, _ = load()
        spec = tf.TensorSpec((None, *pre.input_shape), tf.float32)
        ref = weakref.ref(model)  # the graph must not keep the model alive

        def call(x: Any) -> Any:
            live = ref()
            assert live is not None
            return live(x, training=False)

        _INFERENCE[model] = tf.function(call, input_signature=[spec])
    return _INFERENCE[model]


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(predict(model, x), axis=1) == y))


def _split_accuracy(model: Any, split: Dataset, pre: Preprocessing, batch_size: int) -> float:
    return float(np.mean(np.argmax(predict_split(model, split, pre, batch_size), axis=1)
                         == split.y))


def _accuracies(model: Any, splits: Splits, pre: Preprocessing,
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
    top1 = np.argmax(predict_split(model, splits.test, pre, batch_size), axis=1)
    return RunMetrics(train_accuracy=train_accuracy, val_accuracy=val_accuracy,
                      val_samples=len(val), test_accuracy=float(np.mean(top1 == splits.test.y)),
                      test_samples=len(splits.test), test_predictions=encode(top1))


def _source_before(cfg: FinetuneConfig, keras: Any, source: _Source,
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
        head = _probe_head(cfg, keras, predict_split(features, train, pre, batch), train.y,
                           train.num_classes)
    before = _accuracy(head, predict_split(features, test, pre, batch), test.y)

    def after(features_now: Any, metrics: RunMetrics) -> RunMetrics:
        return replace(metrics, source_accuracy_before=before,
                       source_accuracy_after=_accuracy(
                           head, predict_split(features_now, test, pre, batch), test.y),
                       source_samples=len(test),
                       source_head="pretrain" if source.head_file else "linear-probe")

    return after


def _probe_head(cfg: FinetuneConfig, keras: Any, features: np.ndarray, y: np.ndarray,
                classes: int) -> Any:
    """A softmax classifier on frozen features (when the backbone has no source head)."""
    keras.utils.set_random_seed(cfg.seed)
    head = keras.Sequential([keras.Input(features.shape[1:]),
                             keras.layers.Dense(classes, activation="softmax")])
    _compile(keras, head, 1e-2)
    head.fit(features, y, epochs=100, batch_size=64, verbose=0)
    return head


# ----------------------------------------------------------------------------- output


def _is_chief(strategy: Any) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task = resolver.task_type
    return task == "chief" or (task == "worker" and resolver.task_id == 0
                               and "chief" not in resolver.cluster_spec().as_dict())


def _output_dir(out: Path, strategy: Any) -> tuple[Path, Any]:
    """The run directory; a multi-worker non-chief writes into a temporary one it removes."""
    if _is_chief(strategy):
        out.mkdir(parents=True, exist_ok=True)
        return out, lambda: None
    tmp = Path(tempfile.mkdtemp(prefix="edge-transfer-worker-"))
    return tmp, lambda: shutil.rmtree(tmp, ignore_errors=True)


def _save_model(model: Any, path: Path) -> None:
    from edge_transfer.train.models import save_keras_model

    save_keras_model(model, path)


def _write_run(out: Path, command: str, cfg: TrainingConfig, dataset: Dataset, splits: Splits,
               pre: Preprocessing, backbone: backbones.Backbone, model: Any,
               history: dict[str, Any], metrics: RunMetrics, seconds: float, strategy: Any,
               warnings: list[str], timer: _Timer | None = None) -> None:
    """The run directory; the wall ``seconds`` go to run.json, so that metrics.json (the
    figures alone) is the same bytes for the same seed."""
    _save_model(model, out / MODEL_FILE)
    write_text_atomic(out / LABELS_FILE, "\n".join(dataset.class_names) + "\n")
    decision = backbone.input.to_dict() if backbone.input else None
    write_json(out / PREPROCESSING_FILE, {**pre.to_dict(), "input": decision})
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    RunInfo(
        command=command,
        seconds=seconds,
        seconds_by_phase=({k: round(v, 3) for k, v in timer.seconds.items()}
                          if timer else None),
        args=args,
        seed=cfg.seed,
        data=RunData(spec=absolute_spec(cfg.data), seed=cfg.seed,
                     val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                     shots=cfg.shots,
                     val_data=cfg.val_data and absolute_spec(cfg.val_data),
                     test_data=cfg.test_data and absolute_spec(cfg.test_data),
                     fingerprint=dataset.fingerprint(), skip_bad_files=cfg.skip_bad_files,
                     sizes=SplitSizes(train=len(splits.train), val=len(splits.val),
                                      test=len(splits.test))),
        backbone=RunBackbone(name=backbone.name, source=backbone.source,
                             weights=backbone.weights, input_shape=tuple(pre.input_shape)),
        strategy=RunStrategy(name=cfg.strategy, class_name=type(strategy).__name__,
                             replicas=int(strategy.num_replicas_in_sync)),
        precision=str(_policy_name(model)),
        versions=versions(),
        warnings=tuple(warnings),
    ).dump(out / RUN_FILE)
    write_json(out / HISTORY_FILE, history)
    metrics.dump(out / METRICS_FILE)


def _policy_name(model: Any) -> str:
    policy = getattr(model.layers[-2], "dtype_policy", None)
    return getattr(policy, "name", "float32")


def _say(cfg: TrainingConfig, message: str) -> None:
    if cfg.verbose:
        print(message, flush=True)


__all__ = ["FinetuneConfig", "PretrainConfig", "TrainingConfig", "finetune", "pretrain",
           "summary_line"]

"""Class-incremental transfer: grow a run's classifier with new classes, keeping the old ones.

``extend(ExtendConfig(run=RUN, data=NEW, out=RUN2))`` keeps RUN's extractor frozen, and
makes one head over RUN's classes then NEW's: by default the LDA head of the class
statistics RUN kept plus NEW's (``class_stats.npz``, :mod:`edge_transfer.train.class_stats`);
with ``head="softmax"`` one trained on the features of NEW's training images plus the feature
vectors RUN kept of its classes (``memory.npz``, see :mod:`edge_transfer.train.memory`), with
distillation from RUN's head (:mod:`edge_transfer.train.linear_head`); weight aligning (or a
class-balanced loss) corrects the head's bias toward the new classes. RUN2 is a regular run
(model.keras with every class, labels.txt old then new, run.json whose data spec is
``RUN's spec + NEW``, metrics.json on the test split of all classes), plus
``class_stats.npz``, ``memory.npz`` and ``incremental.json`` (records.IncrementalHistory):
accuracy on all / old / new classes, the old classes before and after on the same test
images, forgetting per class, baselines.

Not run as a doctest (it trains; tests/test_incremental.py does):

>>> extend(ExtendConfig(run=Path("runs/a"), data="digits:5-9",
...                     out=Path("runs/ab")))                      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.errors import ConfigError, DataError, ModelError
from edge_transfer.core.fields import option, required
from edge_transfer.core.records.incremental import BaselineFigures, IncrementalHistory, StepFigures
from edge_transfer.core.records.paired import Comparison
from edge_transfer.core.records.run import RunData, RunInfo, RunMetrics
from edge_transfer.data.dataset import UNION, Dataset, Splits, split_dataset, stratified_sample
from edge_transfer.data.load import absolute_spec, load_dataset
from edge_transfer.train import runs
from edge_transfer.train.class_stats import STATS_FILE, ClassStatistics
from edge_transfer.train.linear_head import HeadTraining, LinearHead, align_weights, train_head
from edge_transfer.train.memory import (
    MEMORY_FILE,
    FeatureMemory,
    build_memory,
    classifier_layer,
    extractor_digest,
)
from edge_transfer.train.messages import say
from edge_transfer.train.runs import Run, versions, write_json

HEADS = ("auto", "lda", "softmax")
BIAS_CORRECTIONS = ("balanced", "wa", "none")
OLD_HEADS = ("auto", "train", "freeze")
BASELINES = ("finetune", "joint")
DEFAULT_MEMORY = 20   # per class; benchmarks/incremental.py (README) for the choice


@dataclass(frozen=True)
class ExtendConfig:
    """Options of ``edge-transfer extend`` (checked on construction).

    >>> ExtendConfig(run=Path("r"), data="digits:5-9", out=Path("o"), memory=-1)
    Traceback (most recent call last):
    ...
    edge_transfer.core.errors.ConfigError: --memory must be 0 or more, got -1
    """

    run: Path = dataclasses.field()            # the positional RUN (not an option field)
    data: str = required("the new classes' data spec (as finetune's --data); their class "
                         "names must differ from the run's", metavar="SPEC")
    out: Path = required("run directory to write: the model of old + new classes",
                         metavar="RUN2")
    head: str = option(
        "auto", "the grown head: lda (from the class means and shared covariance the run "
                "keeps, RUN/class_stats.npz: no item needed, no forgetting of those "
                "statistics), softmax (trained on the new features plus --memory kept "
                "vectors per old class, with distillation and --bias-correction), auto (lda "
                "when the run kept its class statistics, else softmax)", choices=HEADS)
    memory: int = option(DEFAULT_MEMORY,
                         "feature vectors kept per class (herding) for the next step; the "
                         "step also uses at most this many of the run's own; 0: none, only "
                         "distillation protects the old classes", metavar="N")
    distill: float = option(1.0, "weight of distillation from the old head on the old "
                                 "classes (0: off)", metavar="W")
    temperature: float = option(2.0, "distillation temperature", metavar="T")
    bias_correction: str = option(
        "balanced", "against the head's bias toward new classes: balanced (each class weighs "
                    "the same in the loss), wa (weight aligning, Zhao et al. 2020), none",
        choices=BIAS_CORRECTIONS)
    old_head: str = option(
        "auto", "the old classes' weights: train (with the memory and distillation), freeze "
                "(kept exactly; only the new classes' weights learn), auto (freeze when "
                "--memory is 0, else train)", choices=OLD_HEADS)
    epochs: int = option(30, "epochs of the head on the stored features")
    batch_size: int = option(64, "batch size of the head's training")
    learning_rate: float = option(1e-3, "Adam learning rate of the head")
    shots: int | None = option(None, "keep only K training images per new class", metavar="K")
    seed: int | None = option(None, "seed of the head's training (default: the run's seed, "
                                     "which also fixes the split)", metavar="N")
    baseline: tuple[str, ...] = option(
        (), "also measure, on the same test images: finetune (a fresh softmax head trained "
            "on the new data alone, the lower bound) and/or joint (a fresh softmax head "
            "trained on the training images of every class, --shots per class, the upper "
            "bound)", names=BASELINES)
    eval_samples: int = option(1000, "validation images (a fixed stratified subset) the "
                                     "validation accuracy is measured on", metavar="N")
    eval_batch_size: int = option(256, "batch size of feature extraction", metavar="N")
    verbose: int = 1

    def __post_init__(self) -> None:
        if self.memory < 0:
            raise ConfigError(f"--memory must be 0 or more, got {self.memory}")
        for name in ("epochs", "batch_size", "eval_samples", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.distill < 0 or not self.temperature > 0 or not self.learning_rate > 0:
            raise ConfigError("--distill must be >= 0, --temperature and --learning-rate > 0")
        if self.head not in HEADS:
            raise ConfigError(f"--head {self.head} is unknown; use {'|'.join(HEADS)}")
        if self.old_head not in OLD_HEADS:
            raise ConfigError(f"--old-head {self.old_head} is unknown; use "
                              f"{'|'.join(OLD_HEADS)}")
        if self.bias_correction not in BIAS_CORRECTIONS:
            raise ConfigError(f"--bias-correction {self.bias_correction} is unknown; use "
                              f"{'|'.join(BIAS_CORRECTIONS)}")
        unknown = [b for b in self.baseline if b not in BASELINES]
        if unknown:
            raise ConfigError(f"--baseline {','.join(unknown)} is unknown; use "
                              f"{','.join(BASELINES)}")
        if Path(self.out).resolve() == Path(self.run).resolve():
            raise ConfigError("--out must differ from RUN: the run being extended is kept")

    @property
    def freezes_old(self) -> bool:
        """Whether the old classes' weights stay as they were (``--old-head``)."""
        return self.old_head == "freeze" or (self.old_head == "auto" and self.memory == 0)

    def head_training(self, seed: int, balanced: bool, distill: float,
                      frozen: int = 0) -> HeadTraining:
        return HeadTraining(epochs=self.epochs, batch_size=self.batch_size,
                            learning_rate=self.learning_rate, balanced=balanced,
                            distill=distill, temperature=self.temperature, seed=seed,
                            frozen=frozen)


@dataclass(frozen=True, eq=False)
class _Parts:
    """The old run's model cut at its classifier: features model, old head, digest."""

    model: Any
    features: Any
    head: LinearHead
    digest: str


@dataclass(frozen=True, eq=False)
class _Step:
    """The data of one step: union splits, old/new class counts, the seed."""

    dataset: Dataset
    splits: Splits
    spec: str
    old: int
    seed: int


def extend(cfg: ExtendConfig) -> Path:
    """Extend ``cfg.run`` with the classes of ``cfg.data``; write ``cfg.out``."""
    started = time.time()
    old_run = Run.open(cfg.run)
    step = _load_step(cfg, old_run)
    parts = _cut(old_run)
    say(cfg, f"extend: {step.old} classes + {step.dataset.num_classes - step.old} new "
             f"({', '.join(step.dataset.class_names[step.old:])}), memory {cfg.memory}/class")
    feats = _Features(cfg, parts, step, old_run)
    head, memory, stats = _train(cfg, parts, step, feats, old_run)
    figures = _evaluate(cfg, parts, step, feats, head, memory, old_run)
    if cfg.baseline:
        figures = _with_baselines(cfg, parts, step, feats, head, figures)
    model = _grown_model(parts, head)
    _write(cfg, old_run, step, model, head, (memory, stats), feats,
           dataclasses.replace(figures, seconds=round(time.time() - started, 3)))
    return Path(cfg.out)


# ----------------------------------------------------------------------------- data


def _load_step(cfg: ExtendConfig, old_run: Run) -> _Step:
    data = old_run.info.data
    if data.val_data or data.test_data:
        raise ConfigError(f"{old_run.path} was trained with --val-data/--test-data; extend "
                          "needs its split made from its --data alone")
    spec = f"{data.spec}{UNION}{absolute_spec(cfg.data)}"
    pre = old_run.preprocessing
    dataset = load_dataset(spec, image_size=(pre.height, pre.width),
                           skip_bad_files=data.skip_bad_files)
    old = len(old_run.labels)
    if dataset.class_names[:old] != old_run.labels:
        raise DataError(f"the data of {old_run.path} now has classes "
                        f"{dataset.class_names[:old]}, its model {old_run.labels}")
    splits = split_dataset(dataset, seed=data.seed, val_fraction=data.val_fraction,
                           test_fraction=data.test_fraction)
    return _Step(dataset, splits, spec, old, data.seed if cfg.seed is None else cfg.seed)


def _new_train(cfg: ExtendConfig, step: _Step) -> Dataset:
    """The new classes' training images (the first K of each with --shots, as finetune)."""
    train = step.splits.train
    keep = [np.flatnonzero(train.y == c)[:cfg.shots] for c in
            range(step.old, step.dataset.num_classes)]
    return train.subset(np.sort(np.concatenate(keep)))


class _Features:
    """Feature vectors of the step's splits through the frozen extractor, computed once."""

    def __init__(self, cfg: ExtendConfig, parts: _Parts, step: _Step, old_run: Run) -> None:
        self.cfg, self.parts, self.pre = cfg, parts, old_run.preprocessing
        self.new = _new_train(cfg, step)
        self.val = stratified_sample(step.splits.val, cfg.eval_samples, step.seed)
        self.test = step.splits.test
        self.step = step
        self.x_new = self.of(self.new)
        self.x_test = self.of(self.test)
        self.x_val = self.of(self.val)

    def of(self, split: Dataset) -> np.ndarray:
        from edge_transfer.train.inference import predict_split

        key = (self.parts.digest, split.fingerprint())
        if _CACHE is not None and key in _CACHE:
            return _CACHE[key].astype(np.float32)
        x = predict_split(self.parts.features, split, self.pre,
                          self.cfg.eval_batch_size).astype(np.float32)
        if _CACHE is not None:
            _CACHE[key] = x.astype(np.float16)
        return x


_CACHE: dict[tuple[str, str], np.ndarray] | None = None


def cache_features(enabled: bool = True) -> None:
    """Keep every feature array computed in this process (float16, keyed by extractor and
    images): for benchmarks that extend the same run many times; off by default."""
    global _CACHE
    _CACHE = {} if enabled else None


# ----------------------------------------------------------------------------- model


def _cut(run: Run) -> _Parts:
    """The run's model, its features model (the classifier's input) and its head."""
    from edge_transfer.core.keras import load

    _, keras = load()
    model = run.load_model()
    dense = classifier_layer(model)
    features = keras.Model(model.inputs, dense.input, name="features")
    kernel, bias = (np.asarray(w, np.float64) for w in dense.get_weights())
    return _Parts(model, features, LinearHead(kernel, bias), extractor_digest(features))



def _grown_model(parts: _Parts, head: LinearHead) -> Any:
    """The old model's layers up to the classifier's input, then a Dense of every class."""
    from edge_transfer.core.keras import load

    _, keras = load()
    dense = keras.layers.Dense(head.classes, name="head_logits")
    x = dense(parts.features.output)
    out = keras.layers.Activation("softmax", dtype="float32", name="head_softmax")(x)
    dense.set_weights([head.kernel.astype(np.float32), head.bias.astype(np.float32)])
    return keras.Model(parts.model.inputs, out, name=parts.model.name)


# ----------------------------------------------------------------------------- training


def _old_memory(cfg: ExtendConfig, parts: _Parts, old_run: Run) -> FeatureMemory | None:
    if cfg.memory == 0:
        return None
    memory = FeatureMemory.load(old_run.path)
    if memory.extractor != parts.digest or memory.class_names != old_run.labels:
        raise ModelError(f"{old_run.path}/memory.npz was not made by this run's extractor "
                         "and classes; extend with --memory 0, or train the run again")
    return memory.truncated(cfg.memory)


def _old_stats(cfg: ExtendConfig, parts: _Parts, old_run: Run) -> ClassStatistics | None:
    stats = ClassStatistics.load(old_run.path)
    if stats is None and cfg.head == "lda":
        raise ModelError(f"{old_run.path} keeps no class statistics (class_stats.npz: the run "
                         "predates them); extend it with --head softmax, or train it again")
    if stats is not None and (stats.extractor != parts.digest
                              or stats.class_names != old_run.labels):
        raise ModelError(f"{old_run.path}/class_stats.npz was not made by this run's "
                         "extractor and classes; delete it and extend with --head softmax")
    return stats


def _train(cfg: ExtendConfig, parts: _Parts, step: _Step, feats: _Features,
           old_run: Run) -> tuple[LinearHead, FeatureMemory | None, ClassStatistics | None]:
    """The grown head, the memory the new run keeps (old kept + new herded), and the class
    statistics of every class (when the run kept those of its own)."""
    stats = _old_stats(cfg, parts, old_run)
    names = step.dataset.class_names
    if stats is not None:
        stats = stats.plus(ClassStatistics.of(feats.x_new, feats.new.y - step.old,
                                              names[step.old:], parts.digest))
    if cfg.head == "softmax" or stats is None:
        head = _softmax_head(cfg, parts, step, feats, old_run)
    else:
        head = stats.head()
    # items of every class, or none (a memory missing a class could not be used)
    memory = _old_memory(cfg, parts, old_run) if (old_run.path / MEMORY_FILE).is_file() \
        else None
    kept = None if memory is None else memory.plus(build_memory(
        feats.x_new, feats.new.y - step.old, names[step.old:], cfg.memory, parts.digest))
    return head, kept, stats


def _softmax_head(cfg: ExtendConfig, parts: _Parts, step: _Step, feats: _Features,
                  old_run: Run) -> LinearHead:
    """The head trained on the new features plus the kept ones, with distillation."""
    memory = _old_memory(cfg, parts, old_run)
    x, y = feats.x_new, feats.new.y
    if memory is not None:
        x, y = np.concatenate([x, memory.features]), np.concatenate([y, memory.labels])
    total = step.dataset.num_classes
    teacher = parts.head.logits(x) if cfg.distill > 0 else None
    how = cfg.head_training(step.seed, cfg.bias_correction == "balanced", cfg.distill,
                            frozen=step.old if cfg.freezes_old else 0)
    head = train_head(parts.head.grown(total, step.seed), x, y, how, teacher)
    if cfg.bias_correction == "wa":
        head = align_weights(head, step.old)
    return head


# ----------------------------------------------------------------------------- figures


def _evaluate(cfg: ExtendConfig, parts: _Parts, step: _Step, feats: _Features,
              head: LinearHead, memory: FeatureMemory | None, old_run: Run) -> StepFigures:
    from edge_transfer.core import stats

    y = feats.test.y
    after = head.predict(feats.x_test) == y
    old_mask = y < step.old
    before = parts.head.predict(feats.x_test[old_mask]) == y[old_mask]
    names = step.dataset.class_names
    per_class = {names[c]: float(after[y == c].mean()) for c in range(len(names))
                 if np.any(y == c)}
    forgetting = {names[c]: float(before[y[old_mask] == c].mean() - after[y == c].mean())
                  for c in range(step.old) if np.any(y == c)}
    history = _history(old_run)
    return StepFigures(
        step=len(history), run=str(Path(cfg.out)), classes=names[step.old:],
        total_classes=len(names), memory_per_class=cfg.memory,
        memory_bytes=memory.nbytes if memory is not None else 0, test_samples=len(y),
        all_accuracy=float(after.mean()), old_accuracy=float(after[old_mask].mean()),
        new_accuracy=float(after[~old_mask].mean()), old_before=float(before.mean()),
        old_samples=int(old_mask.sum()),
        old_change=Comparison.of(stats.paired(before, after[old_mask])),
        forgetting=forgetting, per_class=per_class)


def _with_baselines(cfg: ExtendConfig, parts: _Parts, step: _Step, feats: _Features,
                    head: LinearHead, figures: StepFigures) -> StepFigures:
    """The lower and upper bounds on the same test images (see ``--baseline``)."""
    from edge_transfer.core import stats

    y = feats.test.y
    ours = head.predict(feats.x_test) == y
    total, out = step.dataset.num_classes, {}
    for name in cfg.baseline:
        how = cfg.head_training(step.seed, False, 0.0)
        if name == "finetune":
            x, labels = feats.x_new, feats.new.y
        else:
            train = step.splits.train
            old_train = train.subset(np.sort(np.concatenate(
                [np.flatnonzero(train.y == c)[:cfg.shots] for c in range(step.old)])))
            x = np.concatenate([feats.of(old_train), feats.x_new])
            labels = np.concatenate([old_train.y, feats.new.y])
        say(cfg, f"baseline {name}: head on {len(labels)} training vectors")
        fresh = LinearHead.initial(feats.x_new.shape[1], total, step.seed)   # not our head
        base = train_head(fresh, x, labels, how)
        right = base.predict(feats.x_test) == y
        old = y < step.old
        out[name] = BaselineFigures(
            all_accuracy=float(right.mean()), old_accuracy=float(right[old].mean()),
            new_accuracy=float(right[~old].mean()),
            method_vs=Comparison.of(stats.paired(right, ours)))
    return dataclasses.replace(figures, baselines=out)


def _history(old_run: Run) -> list[StepFigures]:
    """The old run's steps; a run that was never extended is step 0 of its own."""
    path = old_run.path / IncrementalHistory.FILE_NAME
    if path.is_file():
        return list(IncrementalHistory.load(path).steps)
    metrics = old_run.metrics
    memory = FeatureMemory.load(old_run.path) if (old_run.path / "memory.npz").is_file() \
        else None
    return [StepFigures(step=0, run=str(old_run.path), classes=old_run.labels,
                        total_classes=len(old_run.labels),
                        memory_per_class=memory.per_class if memory else 0,
                        memory_bytes=memory.nbytes if memory else 0,
                        test_samples=metrics.test_samples or 0,
                        all_accuracy=metrics.test_accuracy or 0.0)]


# ----------------------------------------------------------------------------- output


def _write(cfg: ExtendConfig, old_run: Run, step: _Step, model: Any, head: LinearHead,
           kept: tuple[FeatureMemory | None, ClassStatistics | None], feats: _Features,
           figures: StepFigures) -> None:
    from edge_transfer.core.samples import encode
    from edge_transfer.train.run_writer import config_args, split_sizes, write_model

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_model(out, model, step.dataset.class_names)
    shutil.copyfile(old_run.path / runs.PREPROCESSING_FILE, out / runs.PREPROCESSING_FILE)
    info = old_run.info
    data = info.data
    RunInfo(command="extend", seconds=figures.seconds,
            args=config_args(cfg), seed=step.seed,
            data=RunData(spec=step.spec, seed=data.seed, val_fraction=data.val_fraction,
                         test_fraction=data.test_fraction, shots=None,
                         fingerprint=step.dataset.fingerprint(),
                         skip_bad_files=data.skip_bad_files,
                         sizes=split_sizes(step.splits)),
            backbone=info.backbone, strategy=info.strategy, precision=info.precision,
            versions=versions()).dump(out / runs.RUN_FILE)
    top1 = head.predict(feats.x_test)
    RunMetrics(train_accuracy=float(np.mean(head.predict(feats.x_new) == feats.new.y)),
               val_accuracy=float(np.mean(head.predict(feats.x_val) == feats.val.y)),
               val_samples=len(feats.val), test_accuracy=float(np.mean(top1 == feats.test.y)),
               test_samples=len(feats.test), test_predictions=encode(top1)
               ).dump(out / runs.METRICS_FILE)
    write_json(out / runs.HISTORY_FILE, {"extend": {"epochs": cfg.epochs}})
    memory, stats = kept
    for kept_file, name in ((memory, "memory.npz"), (stats, STATS_FILE)):
        if kept_file is not None:
            kept_file.save(out)
        elif (out / name).exists():
            (out / name).unlink()
    IncrementalHistory(steps=(*_history(old_run), figures)).dump(out)



def summary_line(run_dir: Path) -> str:
    """One line: all / old / new accuracy, the old classes' change, baselines."""
    last = IncrementalHistory.load(Path(run_dir)).last
    text = (f"step {last.step}: {last.total_classes} classes, all {last.all_accuracy:.3f}, "
            f"old {_f(last.old_accuracy)} (before {_f(last.old_before)}"
            + (f"; {last.old_change.describe()}" if last.old_change else "") + "), "
            f"new {_f(last.new_accuracy)}")
    for name, base in last.baselines.items():
        text += f", baseline {name} {base.all_accuracy:.3f}"
    return f"{text} -> {run_dir}"


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

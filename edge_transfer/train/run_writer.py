"""The run directory a training run writes (its files: :mod:`edge_transfer.train.runs`): where
(``output_dir``: a multi-worker non-chief writes into a temporary one it removes), the model and
what every later step reads (``write_run``), and for ``extend`` the training features' class
statistics and herded memory (``keep_memory``).

Not run as a doctest (it needs a trained model; tests/test_transfer.py writes runs):

>>> with output_dir(cfg.out, strategy) as out:                         # doctest: +SKIP
...     write_run(out, "finetune", cfg, dataset, splits, pre, backbone, model, history,
...               metrics, seconds, strategy, warnings, timer)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.atomic import write_text_atomic
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records import run as record
from edge_transfer.data.dataset import Dataset, Splits
from edge_transfer.data.load import absolute_spec
from edge_transfer.train import backbones, inference
from edge_transfer.train.config import FinetuneConfig, TrainingConfig
from edge_transfer.train.distribute import is_chief
from edge_transfer.train.fit import Timer
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


@contextmanager
def output_dir(out: Path, strategy: Any) -> Iterator[Path]:
    """The run directory; a multi-worker non-chief writes into a temporary one it removes."""
    if is_chief(strategy):
        out.mkdir(parents=True, exist_ok=True)
        yield out
        return
    tmp = Path(tempfile.mkdtemp(prefix="edge-transfer-worker-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_model(model: Any, path: Path) -> None:
    """``model`` as a ``.keras`` file at ``path`` (``models.save_keras_model``)."""
    from edge_transfer.train.models import save_keras_model

    save_keras_model(model, path)


def write_run(out: Path, command: str, cfg: TrainingConfig, dataset: Dataset, splits: Splits,
              pre: Preprocessing, backbone: backbones.Backbone, model: Any,
              history: dict[str, Any], metrics: record.RunMetrics, seconds: float,
              strategy: Any, warnings: list[str], timer: Timer | None = None) -> None:
    """The run directory; the wall ``seconds`` go to run.json, so that metrics.json (the
    figures alone) is the same bytes for the same seed."""
    write_model(out, model, dataset.class_names)
    decision = backbone.input.to_dict() if backbone.input else None
    write_json(out / PREPROCESSING_FILE, {**pre.to_dict(), "input": decision})
    record.RunInfo(
        command=command,
        seconds=seconds,
        seconds_by_phase=({k: round(v, 3) for k, v in timer.seconds.items()}
                          if timer else None),
        args=config_args(cfg),
        seed=cfg.seed,
        data=record.RunData(
            spec=absolute_spec(cfg.data), seed=cfg.seed, val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction, shots=cfg.shots,
            val_data=cfg.val_data and absolute_spec(cfg.val_data),
            test_data=cfg.test_data and absolute_spec(cfg.test_data),
            fingerprint=dataset.fingerprint(), skip_bad_files=cfg.skip_bad_files,
            sizes=split_sizes(splits)),
        backbone=record.RunBackbone(name=backbone.name, source=backbone.source,
                                    weights=backbone.weights, input_shape=tuple(pre.input_shape)),
        strategy=record.RunStrategy(name=cfg.strategy, class_name=type(strategy).__name__,
                                    replicas=int(strategy.num_replicas_in_sync)),
        precision=str(_policy_name(model)),
        versions=versions(),
        warnings=tuple(warnings),
    ).dump(out / RUN_FILE)
    write_json(out / HISTORY_FILE, history)
    metrics.dump(out / METRICS_FILE)


def write_model(out: Path, model: Any, class_names: Sequence[str]) -> None:
    """``out/model.keras`` and ``out/labels.txt`` (one class name a line)."""
    save_model(model, out / MODEL_FILE)
    write_text_atomic(out / LABELS_FILE, "\n".join(class_names) + "\n")


def config_args(cfg: Any) -> dict[str, Any]:
    """A config's fields as run.json's ``args`` records them (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}


def split_sizes(splits: Splits) -> record.SplitSizes:
    """How many images each split holds, as run.json records them."""
    return record.SplitSizes(train=len(splits.train), val=len(splits.val),
                             test=len(splits.test))


def _policy_name(model: Any) -> str:
    policy = getattr(model.layers[-2], "dtype_policy", None)
    return getattr(policy, "name", "float32")


def keep_memory(out: Path, model: Any, train: Dataset, pre: Preprocessing,
                cfg: FinetuneConfig) -> None:
    """Keep the training features' class statistics (``out/class_stats.npz``,
    :mod:`edge_transfer.train.class_stats`) and herd ``cfg.memory`` feature vectors per class (the
    classifier's input) into ``out/memory.npz``, for a later ``extend``
    (:mod:`edge_transfer.train.memory`)."""
    from edge_transfer.train.class_stats import ClassStatistics
    from edge_transfer.train.memory import build_memory, extractor_digest, features_model

    features = features_model(model)
    digest = extractor_digest(features)
    x = inference.predict_split(features, train, pre, cfg.eval_batch_size).astype(np.float32)
    ClassStatistics.of(x, train.y, train.class_names, digest).save(out)
    if cfg.memory > 0:
        build_memory(x, train.y, train.class_names, cfg.memory, digest).save(out)

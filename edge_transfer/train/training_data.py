"""The data a training run reads: its ``--data`` split by seed (``load_data``), and for
``finetune --source-data`` the source task's split (``load_source``: the pretrain run's own split
and source head when the backbone is that run). Image folders decode at the backbone's input
size.

>>> dataset, splits = load_data(TrainingConfig(data="digits:0-1", out=Path("run")), "digits:0-1",
...                             shots=5)
>>> dataset.num_classes, len(splits.train)
(2, 10)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records.run import RunInfo
from edge_transfer.data.dataset import Dataset, Splits, split_dataset
from edge_transfer.data.load import load_dataset
from edge_transfer.train import backbones
from edge_transfer.train.config import FinetuneConfig, TrainingConfig
from edge_transfer.train.runs import PREPROCESSING_FILE, RUN_FILE, SOURCE_HEAD_FILE


def load_data(cfg: TrainingConfig, spec: str, shots: int | None) -> tuple[Dataset, Splits]:
    """``spec`` loaded for ``cfg`` and split by its seed and fractions (``shots`` per class
    for training)."""
    dataset = load_dataset(spec, image_size=_data_image_size(cfg),
                           skip_bad_files=cfg.skip_bad_files, val_data=cfg.val_data,
                           test_data=cfg.test_data)
    splits = split_dataset(dataset, seed=cfg.seed, val_fraction=cfg.val_fraction,
                           test_fraction=cfg.test_fraction, shots=shots)
    return dataset, splits


@dataclass(frozen=True)
class Source:
    """The source task's splits, and the head to measure it with."""

    splits: Splits
    head_file: Path | None              # the pretrain's own source head, when it matches


def load_source(cfg: FinetuneConfig) -> Source:
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
    return Source(splits, head if head is not None and head.is_file() else None)


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

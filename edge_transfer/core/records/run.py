"""``RUN/run.json`` (:class:`RunInfo`: how a run was made) and ``RUN/metrics.json``
(:class:`RunMetrics`: its figures), written by ``pretrain`` / ``finetune``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_transfer.core.errors import ModelError
from edge_transfer.core.records.base import OMIT_NONE, FileRecord, Record, json_key

_RETRAIN = "train the run again (`edge-transfer finetune --out RUN`, or pretrain)"


@dataclass(frozen=True)
class SplitSizes(Record):
    """Images in each split of a run."""

    train: int
    val: int
    test: int


@dataclass(frozen=True)
class RunData(Record):
    """What reproduces a run's splits: the data spec (absolute paths), the split's seed and
    fractions, the shots, the separate validation / test data, and the data's fingerprint
    (checked when the splits are rebuilt)."""

    spec: str
    seed: int
    val_fraction: float
    test_fraction: float
    fingerprint: str
    shots: int | None = None
    val_data: str | None = None
    test_data: str | None = None
    skip_bad_files: bool = False
    sizes: SplitSizes | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class RunBackbone(Record):
    """The extractor a run started from: its name, where it came from (registry name, run
    folder or model file), its starting weights and the model's input shape."""

    name: str
    source: str
    weights: str | None
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class RunStrategy(Record):
    """The tf.distribute strategy a run trained under (``class`` in the JSON)."""

    class_name: str = field(metadata=json_key("class"))
    replicas: int
    name: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class RunInfo(FileRecord, file="run.json", version=1, error=ModelError, make=_RETRAIN,
              unversioned_is_current=True):
    """``RUN/run.json``: how a run was made: the command, its arguments, the data that
    reproduces its splits, the backbone, strategy, precision policy, the versions of every
    package that matters, the wall seconds (all and by phase) and the warnings it printed.
    Files written before the record existed (no ``schema_version``, fewer keys) still load.

    >>> info = RunInfo.from_dict({"command": "finetune", "data": {
    ...     "spec": "digits:5-9", "seed": 0, "val_fraction": 0.15, "test_fraction": 0.25,
    ...     "shots": 10, "fingerprint": "1025a9517fa0a376"}})
    >>> info.data.shots, info.seconds, info.warnings
    (10, None, ())
    """

    command: str
    data: RunData
    seconds: float | None = None
    seconds_by_phase: dict[str, float] | None = None
    args: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    backbone: RunBackbone | None = field(default=None, metadata=OMIT_NONE)
    strategy: RunStrategy | None = field(default=None, metadata=OMIT_NONE)
    precision: str | None = field(default=None, metadata=OMIT_NONE)
    versions: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunMetrics(FileRecord, file="metrics.json", version=1, error=ModelError, make=_RETRAIN,
                 unversioned_is_current=True):
    """``RUN/metrics.json``: a run's figures (fractions in [0, 1]). A figure the run did not
    measure (no ``--baseline scratch``, no ``--source-data``, pretrain's L2-SP) is None here
    and absent from the file, as it always was; older files load with what they hold.

    ``val_accuracy`` is on ``val_samples`` images (the fixed stratified subset early stopping
    used), ``test_accuracy`` on the whole test split (``test_samples``); ``test_predictions``
    and ``scratch_test_predictions`` are the test split's top-1 per sample
    (:func:`edge_transfer.core.samples.encode`); the source figures are on the same
    ``source_samples`` images before and after fine-tuning, through ``source_head``
    (``pretrain`` or ``linear-probe``).

    >>> m = RunMetrics(test_accuracy=0.9, scratch_test_accuracy=0.8)
    >>> sorted(m.to_dict()), m.transfer_measured
    (['schema_version', 'scratch_test_accuracy', 'test_accuracy'], True)
    >>> RunMetrics.from_dict({"test_accuracy": "high"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edge_transfer.core.records.base.MalformedRecord: test_accuracy: expected float, got 'high'
    """

    train_accuracy: float | None = field(default=None, metadata=OMIT_NONE)
    val_accuracy: float | None = field(default=None, metadata=OMIT_NONE)
    val_samples: int | None = field(default=None, metadata=OMIT_NONE)
    test_accuracy: float | None = field(default=None, metadata=OMIT_NONE)
    test_samples: int | None = field(default=None, metadata=OMIT_NONE)
    test_predictions: str | None = field(default=None, metadata=OMIT_NONE)
    l2sp_penalty: float | None = field(default=None, metadata=OMIT_NONE)
    source_accuracy_before: float | None = field(default=None, metadata=OMIT_NONE)
    source_accuracy_after: float | None = field(default=None, metadata=OMIT_NONE)
    source_samples: int | None = field(default=None, metadata=OMIT_NONE)
    source_head: str | None = field(default=None, metadata=OMIT_NONE)
    scratch_test_accuracy: float | None = field(default=None, metadata=OMIT_NONE)
    scratch_val_accuracy: float | None = field(default=None, metadata=OMIT_NONE)
    scratch_test_predictions: str | None = field(default=None, metadata=OMIT_NONE)

    @property
    def transfer_measured(self) -> bool:
        """True when the run measured a scratch baseline or the source accuracy."""
        return any(v is not None for v in (self.scratch_test_accuracy,
                                           self.source_accuracy_before,
                                           self.source_accuracy_after))

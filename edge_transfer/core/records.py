"""The JSON files edge-transfer writes and reads: one frozen, typed record per file.

    file                      record            rows               written by / read by
    RUN/run.json              RunInfo           RunData, ...       pretrain, finetune / Run, report
    RUN/metrics.json          RunMetrics        -                  pretrain, finetune / report, runs
    RUN/export/export.json    ExportRecord      ExportArtifact     export / bundle, report, bench
    BUNDLE/manifest.json      Manifest          ManifestArtifact   bundle / validate (device)
    validate --json OUT       ValidationResult  ValidationRow,     validate / report, bench
                                                ClientRow
    REPORT/report.json        Report            ReportRow          report / check
    bench --json OUT          BenchTable        BenchRow           bench

Each file record has its ``FILE_NAME`` and ``SCHEMA_VERSION`` here, once; ``load(path)``
reads and checks it, ``dump(path)`` writes it through :mod:`edge_transfer.core.atomic`;
``from_dict`` / ``to_dict`` convert by the fields' types. The JSON keys are the field names.
A missing, unreadable, malformed or too-new file is a :class:`~edge_transfer.core.errors.UserError`
subclass (the record's ``ERROR``, or the caller's ``error=``) whose message names the fix.

To add a figure to a file, add a field with a default to its record: older files (without
the key) still load, and readers that do not know the key ignore it. A field declared with
``field(default=None, metadata=OMIT_NONE)`` is left out of the JSON while it is None; one
declared with ``metadata=json_key("class")`` is written under that key (a Python keyword).
Importing this module needs numpy and nothing heavier (the device side uses it).

>>> row = ManifestArtifact(name="tflite-int8", file="model-int8.tflite", format="tflite",
...                        precision="int8", sha256="ab" * 32, bytes=1234)
>>> ManifestArtifact.from_dict(row.to_dict()) == row
True
>>> ManifestArtifact.from_dict({**row.to_dict(), "bytes": "many"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
edge_transfer.core.records.MalformedRecord: bytes: expected int, got 'many'
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, ParamSpec, TypeVar

from edge_transfer.core.errors import (
    BundleError,
    DeviceError,
    ExportError,
    ModelError,
    UserError,
    one_line,
)
from edge_transfer.core.preprocessing import Preprocessing

OMIT_NONE = {"omit_none": True}
"""Field metadata: leave the key out of the JSON while the value is None."""


def json_key(key: str, **metadata: Any) -> dict[str, Any]:
    """Field metadata: the field's JSON key is ``key`` (for a key that is a Python keyword).

    >>> json_key("class")
    {'key': 'class'}
    """
    return {"key": key, **metadata}


def _key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))

R = TypeVar("R", bound="Record")
F = TypeVar("F", bound="FileRecord")
P = ParamSpec("P")


class MalformedRecord(ValueError):
    """A value of the wrong type or a missing key; ``load`` turns it into the file's error."""


# --------------------------------------------------------------------------- machinery


class Record:
    """A frozen dataclass converted to and from JSON by its fields' types."""

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "") -> R:
        """The record of a JSON object; unknown keys are ignored, missing ones take their
        defaults (a missing key without a default is :class:`MalformedRecord`)."""
        if not isinstance(data, Mapping):
            raise MalformedRecord(f"{where or cls.__name__}: expected an object, "
                                  f"got {_short(data)}")
        cls._check_dict(data)
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if not f.init:
                continue
            name = _key(f)
            key = f"{where}.{name}" if where else name
            if name in data:
                values[f.name] = _convert(hints[f.name], data[name], key)
            elif (f.default is dataclasses.MISSING
                  and f.default_factory is dataclasses.MISSING):
                raise MalformedRecord(f"{key} is missing")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise MalformedRecord(f"{where or cls.__name__}: {one_line(exc)}") from exc

    @classmethod
    def _check_dict(cls, data: Mapping[str, Any]) -> None:
        """Checks of the whole object before its fields are read (none by default)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (plain dicts, lists, numbers, strings, None)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[_key(f)] = _plain(value)
        return out


def as_dict(make: Callable[P, Record]) -> Callable[P, dict[str, Any]]:
    """``make`` returning its record's JSON object instead: the dict-returning API of a
    function whose typed version returns a record (``validate_bundle = as_dict(validate)``)."""
    @functools.wraps(make)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        return make(*args, **kwargs).to_dict()

    wrapper.__doc__ = (f"{make.__name__}(...) as its record's JSON object (a dict).\n\n"
                       f"{make.__doc__ or ''}")
    return wrapper


class FileRecord(Record):
    """A record that is a whole file: ``schema_version`` is written and checked here."""

    FILE_NAME: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int]
    ERROR: ClassVar[type[UserError]] = UserError
    MAKE: ClassVar[str] = "write it again"   # how the user makes this file again
    # True for files that existed before their record: one without ``schema_version``
    # (written by an older release) is read as this version.
    UNVERSIONED_IS_CURRENT: ClassVar[bool] = False

    @classmethod
    def _check_dict(cls, data: Mapping[str, Any]) -> None:
        if "schema_version" in data or not cls.UNVERSIONED_IS_CURRENT:
            _check_version(cls, data.get("schema_version"))

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.SCHEMA_VERSION, **super().to_dict()}

    @classmethod
    def load(cls: type[F], path: str | Path, *, error: type[UserError] | None = None,
             fix: str | None = None, missing: str | None = None) -> F:
        """Read and check ``path`` (a file, or a folder holding ``FILE_NAME``).

        ``error`` is the UserError subclass to raise (default the record's ``ERROR``),
        ``fix`` what the message tells the user to do (default the record's ``MAKE``),
        ``missing`` what it tells them when there is no such file (default ``fix``).
        """
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILE_NAME
        raise_ = error or cls.ERROR
        fix = fix or cls.MAKE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise raise_(f"{path} is missing (it does not exist); {missing or fix}") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise raise_(f"cannot read {path} ({one_line(exc)}); {fix}") from exc
        if not isinstance(data, dict):
            raise raise_(f"{path} holds no JSON object; {fix}")
        try:
            return cls.from_dict(data)
        except _TooNew as exc:
            raise raise_(f"{path} has {exc}: upgrade edge-transfer (pip install -U "
                         f"edge-transfer) to read it, or {fix}") from exc
        except _OtherVersion as exc:
            raise raise_(f"{path} has {exc}; {fix}") from exc
        except (MalformedRecord, UserError) as exc:
            raise raise_(f"{path} is malformed ({one_line(exc)}); {fix}") from exc

    def dump(self, path: str | Path, parents: bool = False) -> Path:
        """Write the record atomically to ``path`` (a file, or a folder for ``FILE_NAME``)."""
        from edge_transfer.core.atomic import write_text_atomic

        path = Path(path)
        if path.is_dir():
            path = path / self.FILE_NAME
        write_text_atomic(path, self.to_json(), parents=parents)
        return path

    def to_json(self) -> str:
        """The file's text: indented, keys sorted, one trailing newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default) + "\n"


class _TooNew(MalformedRecord):
    pass


class _OtherVersion(MalformedRecord):
    pass


def _check_version(cls: type[FileRecord], version: Any) -> None:
    reads = f"this edge-transfer reads {cls.SCHEMA_VERSION}"
    if isinstance(version, int) and not isinstance(version, bool):
        if version > cls.SCHEMA_VERSION:
            raise _TooNew(f"schema_version {version} ({reads}, a newer edge-transfer wrote it)")
        if version == cls.SCHEMA_VERSION:
            return
    raise _OtherVersion(f"schema_version {version!r} ({reads})")


def _hints(cls: type) -> dict[str, Any]:
    cached = _HINTS.get(cls)
    if cached is None:
        cached = _HINTS[cls] = typing.get_type_hints(cls)
    return cached


_HINTS: dict[type, dict[str, Any]] = {}


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` from JSON as type ``tp`` (records, tuples, dicts, optionals, scalars)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except MalformedRecord as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise MalformedRecord(f"{where}: expected one of {typing.get_args(tp)}, "
                              f"got {_short(value)}")
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value, where)
    if tp is Preprocessing:
        if not isinstance(value, Mapping):
            raise MalformedRecord(f"{where}: expected an object, got {_short(value)}")
        try:
            return Preprocessing.from_dict(dict(value))
        except UserError as exc:
            raise MalformedRecord(f"{where}: {one_line(exc, 200)}") from exc
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise MalformedRecord(f"{where}: expected a list, got {_short(value)}")
        item = typing.get_args(tp)[0]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise MalformedRecord(f"{where}: expected an object, got {_short(value)}")
        args = typing.get_args(tp)
        item_type = args[1] if args else Any
        return {str(k): _convert(item_type, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (str, bool):
        if isinstance(value, tp):
            return value
    else:
        raise TypeError(f"records cannot convert {tp!r} ({where})")  # a bug in a record
    raise MalformedRecord(f"{where}: expected {tp.__name__}, got {_short(value)}")


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Preprocessing):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return _json_default(value) if not isinstance(value, str | int | float | bool) and \
        value is not None else value


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists, paths as strings."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- per-sample figures


@dataclass(frozen=True)
class SampleIds(Record):
    """Which samples a set of per-sample predictions was made on: the data's fingerprint,
    the split, the positions in that split and their true labels (the last two encoded with
    :func:`edge_transfer.core.samples.encode`). Two predictions are compared pair by pair only
    when their ``SampleIds`` are the same (:meth:`same_samples`).

    >>> ids = SampleIds.of("1025a9517fa0a376", "test", labels=[0, 1, 1])
    >>> ids.count, ids.label_array().tolist(), ids.same_samples(ids)
    (3, [0, 1, 1], True)
    """

    fingerprint: str
    split: str
    indices: str
    labels: str
    count: int

    @classmethod
    def of(cls, fingerprint: str, split: str, labels: Any, indices: Any = None) -> SampleIds:
        """From the true labels (and positions, default ``0..n-1``) of the samples."""
        import numpy as np

        from edge_transfer.core.samples import encode

        labels = np.asarray(labels).ravel()
        index = np.arange(labels.size) if indices is None else np.asarray(indices).ravel()
        if index.size != labels.size:
            raise ValueError(f"{index.size} indices for {labels.size} labels")
        return cls(str(fingerprint), str(split), encode(index), encode(labels), int(labels.size))

    def same_samples(self, other: SampleIds | None) -> bool:
        """True when ``other`` names the very same samples (data, split, positions, labels)."""
        return other is not None and (self.fingerprint, self.split, self.indices,
                                      self.labels) == (other.fingerprint, other.split,
                                                       other.indices, other.labels)

    def label_array(self) -> Any:
        """The true labels as an int64 array (SamplesError if the string is damaged)."""
        from edge_transfer.core.samples import decode

        return decode(self.labels)

    def describe(self) -> str:
        """``'134 samples of the test split'``."""
        return f"{self.count:,} samples of the {self.split} split"


@dataclass(frozen=True)
class Comparison(Record):
    """Model B against model A on the same samples (B - A, fractions): the paired difference
    with its 95% interval (Newcombe), the exact McNemar p-value, and the discordant counts
    (``lost``: right in A, wrong in B; ``gained``: the reverse).
    See :mod:`edge_transfer.core.stats`.
    """

    n: int
    difference: float
    low: float
    high: float
    p_value: float
    lost: int
    gained: int

    @classmethod
    def of(cls, paired: Any) -> Comparison:
        """From a :class:`edge_transfer.core.stats.Paired`."""
        return cls(n=paired.n, difference=float(paired.difference),
                   low=float(paired.interval.low), high=float(paired.interval.high),
                   p_value=float(paired.p_value), lost=paired.only_a, gained=paired.only_b)

    def describe(self) -> str:
        """``'-0.7 pt [-4.2, +2.3], p=1 (lost 1, gained 0 of 134)'``."""
        from edge_transfer.core.stats import format_p

        return (f"{self.difference * 100:+.1f} pt [{self.low * 100:+.1f}, "
                f"{self.high * 100:+.1f}], p={format_p(self.p_value)} "
                f"(lost {self.lost}, gained {self.gained} of {self.n})")


@dataclass(frozen=True)
class ExportDecision(Record):
    """How ``export`` judged an accuracy drop (``decide``: ``significant`` or ``point``)."""

    max_accuracy_drop: float
    alpha: float = 0.05
    decide: str = "significant"


# --------------------------------------------------------------------------- run.json, metrics.json

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
class RunInfo(FileRecord):
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

    FILE_NAME: ClassVar[str] = "run.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    ERROR: ClassVar[type[UserError]] = ModelError
    MAKE: ClassVar[str] = _RETRAIN
    UNVERSIONED_IS_CURRENT: ClassVar[bool] = True

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
class RunMetrics(FileRecord):
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
    edge_transfer.core.records.MalformedRecord: test_accuracy: expected float, got 'high'
    """

    FILE_NAME: ClassVar[str] = "metrics.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    ERROR: ClassVar[type[UserError]] = ModelError
    MAKE: ClassVar[str] = _RETRAIN
    UNVERSIONED_IS_CURRENT: ClassVar[bool] = True

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


# --------------------------------------------------------------------------- export.json


@dataclass(frozen=True)
class TensorRecord(Record):
    """An input or output of an exported file (``-1`` marks a dynamic axis)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None


@dataclass(frozen=True)
class TrainedSteps(Record):
    """A QAT or pruned variant's two steps, each paired on the check samples: the fine-tune
    (``fine_tune``: the trained Keras model against the float model the user had) and the
    conversion (``conversion``: the file against that trained model; ``agreement``: their
    top-1 agreement). The file against the float model is the check's ``vs_float``."""

    step: str                        # "QAT" or "pruning"
    model_accuracy: float            # the trained Keras model's accuracy
    fine_tune: Comparison            # trained Keras model - float model
    conversion: Comparison           # file - trained Keras model
    agreement: float                 # top-1 agreement of the file with the trained model
    model_predictions: str | None = None   # the trained Keras model's top-1 per sample


@dataclass(frozen=True)
class ExportCheck(Record):
    """The exported file compared with its Keras model on the run's test split
    (``max_abs_diff``, ``top1_agreement``: with the model it was converted from) and with the
    float model (``vs_float``; for a QAT or pruned file also ``steps``, which says which step
    lost what). In an export.json written before ``steps`` existed, a QAT or pruned file's
    ``vs_float`` is against its own trained model, not the float model."""

    samples: int
    max_abs_diff: float
    top1_agreement: float
    accuracy: float
    tolerance: float | None
    passed: bool
    predictions: str | None = None          # top-1 per sample (edge_transfer.core.samples.encode)
    vs_float: Comparison | None = None      # this file against the float model, paired
    underpowered: str | None = None         # too few samples to resolve a drop of the tolerance
    steps: TrainedSteps | None = field(default=None, metadata=OMIT_NONE)   # QAT / pruned


@dataclass(frozen=True)
class KeepFloatTry(Record):
    """One re-quantization ``--keep-float auto`` judged: how many layers it kept in float,
    its bytes, its accuracy on the search sample and its paired comparison with float."""

    layers: int
    bytes: int
    accuracy: float
    vs_float: Comparison


@dataclass(frozen=True)
class KeepFloatSearch(Record):
    """How ``--keep-float auto`` chose an int8-mixed variant's float layers
    (:mod:`edge_transfer.export.keep_float`): every try (plain int8 first) on ``samples`` validation
    images paired with the float model, the chosen model's bytes over plain int8's, whether
    the per-layer errors had to be measured, and why the search stopped."""

    samples: int
    float_accuracy: float
    int8_bytes: int
    max_bytes_ratio: float        # the cap (--keep-float-max-bytes)
    bytes_ratio: float            # the chosen model's bytes / plain int8's
    conversions: int              # re-quantizations tried, plain int8 included
    measured: bool                # per-layer errors measured (not when plain int8 passed)
    within_budget: bool
    stopped: str                  # why the search stopped, one line
    tries: tuple[KeepFloatTry, ...] = ()
    limit: str | None = None      # the bound it hit: "max_bytes" or "conversions" (or None)
    # the file written from the choice (its metadata included): checked against the above
    file_bytes: int | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, kw_only=True)
class ArtifactOutcome:
    """What exporting one variant gave, declared once for the exporters' ``Artifact`` (which
    adds its spec and path) and ``export.json``'s :class:`ExportArtifact` (which adds the
    names and the relative file); keyword-only."""

    status: str                      # "ok" only after the file's check passed
    reason: str | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    sha256: str | None = None
    inputs: tuple[TensorRecord, ...] = ()
    outputs: tuple[TensorRecord, ...] = ()
    check: ExportCheck | None = None
    seconds: float | None = None          # converting and writing the file
    check_seconds: float | None = None    # running it over the test split
    notes: tuple[str, ...] = ()      # e.g. what --keep-float auto / QAT left float
    keep_float_search: KeepFloatSearch | None = field(default=None, metadata=OMIT_NONE)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def outcome(self) -> dict[str, Any]:
        """These fields by name (to build the other kind of artifact from this one)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ArtifactOutcome)}


@dataclass(frozen=True)
class ExportArtifact(ArtifactOutcome, Record):
    """One variant in ``export.json``; ``file`` is relative to the export folder."""

    name: str
    format: str
    precision: str
    qat: bool = False
    sparsity: float | None = None
    io: str = "float"
    file: str | None = None
    accuracy: float | None = None
    kept_float: tuple[str, ...] | None = None   # int8-mixed: the layers left in float


@dataclass(frozen=True)
class ExportTiming(Record):
    """Where an export's time went: its wall time, the worker processes that converted
    variants side by side (1: one after another), the sums of the variants' convert and
    check seconds, and the preparation (loading, float predictions, QAT / pruning)."""

    wall_seconds: float
    jobs: int
    convert_seconds: float
    check_seconds: float
    preparation_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def variant_seconds(self) -> float:
        return self.convert_seconds + self.check_seconds


@dataclass(frozen=True)
class ExportRecord(FileRecord):
    """``RUN/export/export.json``: every variant an export produced or failed to produce."""

    FILE_NAME: ClassVar[str] = "export.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    ERROR: ClassVar[type[UserError]] = ExportError
    MAKE: ClassVar[str] = "export the run again (`edge-transfer export RUN`)"

    run: str
    data_fingerprint: str | None
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    float_accuracy: float | None
    artifacts: tuple[ExportArtifact, ...]
    versions: dict[str, str] = field(default_factory=dict)
    samples: SampleIds | None = None          # the test samples every check ran on
    float_predictions: str | None = None      # the Keras model's top-1 on them
    decision: ExportDecision | None = None
    timing: ExportTiming | None = field(default=None, metadata=OMIT_NONE)
    # The float model at chance or on one class on the check data: every variant then
    # "passes" by matching a model that does not work (stats.health_warning, with a hint).
    float_health: str | None = field(default=None, metadata=OMIT_NONE)

    def artifact(self, name: str) -> ExportArtifact:
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        raise KeyError(f"no artifact {name!r}; have {[a.name for a in self.artifacts]}")

    @property
    def ok_artifacts(self) -> tuple[ExportArtifact, ...]:
        return tuple(a for a in self.artifacts if a.ok)


# --------------------------------------------------------------------------- diagnose.json


@dataclass(frozen=True)
class LayerDiagnosis(Record):
    """One Keras layer's quantization error (relative RMS), with the nodes it became."""

    layer: str
    op_type: str
    depth: int
    local: float          # error the layer adds itself, given quantized inputs
    cumulative: float     # error built up by its output against the float model
    reading: str
    nodes: tuple[str, ...] = ()
    weights: int = 0      # weight values its ops hold (float costs ~3 bytes more per value)


@dataclass(frozen=True)
class Diagnosis(Record):
    """One format and precision diagnosed: layers ranked worst first."""

    run: str
    format: str
    precision: str
    samples: int
    float_accuracy: float
    quantized_accuracy: float
    seconds: float
    layers: tuple[LayerDiagnosis, ...]
    plot: str | None = None
    by_depth: tuple[str, ...] = ()    # layer names in graph order
    # what the errors' shape says (edge_transfer.export.quant_signs)
    signs: tuple[str, ...] = ()


@dataclass(frozen=True)
class DiagnoseRecord(FileRecord):
    """``RUN/export/diagnose.json``: every diagnosis of ``edge-transfer diagnose``."""

    FILE_NAME: ClassVar[str] = "diagnose.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    ERROR: ClassVar[type[UserError]] = ExportError
    MAKE: ClassVar[str] = "run `edge-transfer diagnose RUN` again"

    diagnoses: tuple[Diagnosis, ...] = ()


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LatencyStats(Record):
    """How one file's latency was measured (:mod:`edge_transfer.core.latency`): one image
    at a time, ``warmup`` untimed runs, then ``runs`` timed: milliseconds at p50 (median),
    p90, p99 and the interquartile range, with the runtime's ``threads``."""

    p50: float
    p90: float
    p99: float
    runs: int
    warmup: int
    iqr: float | None = None
    threads: int | None = None
    batch: int = 1
    q25: float | None = None      # the quartiles the IQR spans
    q75: float | None = None

    def describe(self) -> str:
        """``'0.720 ms median (IQR 0.050) of 100 runs, 5 warm-up, 2 threads'``."""
        from edge_transfer.core.latency import describe_latency

        return describe_latency(self.to_dict())


@dataclass(frozen=True)
class Recommendation(Record):
    """Which file to deploy on one device (:mod:`edge_transfer.deploy.recommend`): within the
    accuracy tolerance of float (paired), within the profile's budgets, fastest measured
    latency, then smallest. ``artifact`` is None when no file qualifies; ``excluded`` says
    why each other file was not chosen; ``trades`` one line per notable trade; ``basis``
    what the latency ranking stood on."""

    device: str
    artifact: str | None
    reason: str
    profile: str | None = None
    emulated: bool = False
    basis: str = ""
    trades: tuple[str, ...] = ()
    excluded: dict[str, str] = field(default_factory=dict)
    ranking: tuple[str, ...] = ()     # the qualifying files, best first


# --------------------------------------------------------------------------- manifest.json


@dataclass(frozen=True)
class ManifestArtifact(Record):
    """One model file of a bundle, with the accuracies the workstation measured."""

    name: str
    file: str
    format: str
    precision: str
    sha256: str
    bytes: int
    workstation_accuracy: float | None = None   # on the bundle's validation sample
    export_accuracy: float | None = None        # export.json's (the run's test split)
    workstation_predictions: str | None = None  # top-1 per sample of the validation sample
    kept_float: tuple[str, ...] = ()            # int8-mixed: layers left in float
    # where workstation_predictions came from: "export.json" (the export's check, reused)
    # or "bundle" (measured when the bundle was made)
    predictions_from: str | None = field(default=None, metadata=OMIT_NONE)
    latency: LatencyStats | None = field(default=None, metadata=OMIT_NONE)  # bundle --for


@dataclass(frozen=True)
class Manifest(FileRecord):
    """``BUNDLE/manifest.json``: what a bundle holds, with every file's sha256."""

    FILE_NAME: ClassVar[str] = "manifest.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    ERROR: ClassVar[type[UserError]] = BundleError
    MAKE: ClassVar[str] = "create the bundle again (`edge-transfer bundle RUN --out DIR`)"

    labels: tuple[str, ...]
    preprocessing: Preprocessing
    data_fingerprint: str
    tolerance: float
    validation_sample: str
    validation_sha256: str
    artifacts: tuple[ManifestArtifact, ...]
    run: str | None = None
    samples: SampleIds | None = None    # the validation sample: positions in the test split
    # issue 25: the sample is a stratified subset of ``split_samples`` test images (or all);
    # the float model's top-1 on it (to judge each file against float, paired); and, for
    # ``bundle --for PROFILE``, the profile, what it left out and the recommended file.
    split_samples: int | None = field(default=None, metadata=OMIT_NONE)
    float_predictions: str | None = field(default=None, metadata=OMIT_NONE)
    profile: str | None = field(default=None, metadata=OMIT_NONE)
    left_out: dict[str, str] = field(default_factory=dict)
    recommendation: Recommendation | None = field(default=None, metadata=OMIT_NONE)

    @property
    def recommended(self) -> str | None:
        """The artifact name ``bundle --for`` marked as the one to deploy, or None."""
        return self.recommendation.artifact if self.recommendation else None


# --------------------------------------------------------------------------- validate --json


@dataclass(frozen=True)
class BudgetCheck(Record):
    """One budget of a device profile on one artifact: ``pass``, ``fail`` or ``skip``."""

    name: str
    status: str
    value: Any = None
    limit: Any = None
    detail: str | None = None
    emulated: bool | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class Agreement(Record):
    """A device's outputs against the workstation's on the same sample."""

    reference: str = "workstation"
    top1: float | None = None
    max_abs_diff: float | None = None
    samples: int = 0
    reference_accuracy: float | None = None
    detail: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class ClientRow(Record):
    """One bundle file run in one deploy client (``validate --client``): ``ok`` (it ran),
    ``disagrees`` (it ran, significantly less accurate than our runtime beyond the bundle's
    tolerance), ``refused`` (the client refused or failed on the file: ``reason`` is its
    message) or ``missing`` (the client is not installed where the validation ran).
    ``agreement``: the share of images whose top-1 label equals our runtime's on the same
    images, with its Wilson 95% interval; ``vs_runtime``: the client's accuracy minus our
    runtime's, paired."""

    artifact: str
    client: str
    status: str
    reason: str | None = None
    version: str | None = None
    samples: int = 0
    agreement: float | None = None
    agreement_low: float | None = None
    agreement_high: float | None = None
    accuracy: float | None = None
    vs_runtime: Comparison | None = None
    predictions: str | None = None       # the client's top-1 per sample (label index)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def cell(self) -> str:
        """A table cell: ``'agrees 99.6% [97.5, 99.9], p=1'`` (p: the paired accuracy
        difference with our runtime), ``'ran (no runtime to compare)'``, or the status.

        >>> ClientRow("tflite-int8", "litert", "refused", "no labels").cell()
        'refused'
        """
        if self.agreement is None and not self.ok:
            return self.status
        if self.agreement is None:
            return "ran (no runtime to compare)"
        from edge_transfer.core.stats import format_p

        p = f", p={format_p(self.vs_runtime.p_value)}" if self.vs_runtime else ""
        verb = "agrees" if self.ok else "DISAGREES:"
        return (f"{verb} {self.agreement * 100:.1f}% [{(self.agreement_low or 0) * 100:.1f}, "
                f"{(self.agreement_high or 0) * 100:.1f}]{p}")


@dataclass(frozen=True)
class DeviceInfo(Record):
    """Where a validation ran."""

    name: str
    profile: str | None = None
    arch: str | None = None
    emulated: bool = False
    host_arch: str | None = field(default=None, metadata=OMIT_NONE)
    runtimes: dict[str, str | None] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class ValidationRow(Record):
    """One artifact run on a device: ``ok``, ``failed`` (with ``reason``) or ``skipped``."""

    name: str
    format: str
    precision: str
    status: str
    file: str | None = None
    bytes: int | None = None
    reason: str | None = None
    samples: int = 0
    accuracy: float | None = None
    workstation_accuracy: float | None = None
    per_class_accuracy: tuple[float | None, ...] | None = None
    confusion_matrix: tuple[tuple[int, ...], ...] | None = None
    latency_ms: dict[str, float] | None = None
    throughput_fps: float | None = None
    peak_memory_mb: float | None = None
    checks: tuple[BudgetCheck, ...] = ()
    emulated: bool | None = field(default=None, metadata=OMIT_NONE)
    agreement: Agreement | None = field(default=None, metadata=OMIT_NONE)
    predictions: str | None = None              # the device's top-1 per sample
    workstation_predictions: str | None = None  # the workstation's, same samples (manifest)
    latency: LatencyStats | None = field(default=None, metadata=OMIT_NONE)  # how, threads

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class ValidationResult(FileRecord):
    """What ``edge-transfer validate --json OUT`` writes."""

    FILE_NAME: ClassVar[str] = "validation.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    ERROR: ClassVar[type[UserError]] = DeviceError
    MAKE: ClassVar[str] = "write it again with `edge-transfer validate BUNDLE --json OUT`"

    device: DeviceInfo
    bundle: str
    data_fingerprint: str | None
    artifacts: tuple[ValidationRow, ...]
    data: str | None = None
    samples: SampleIds | None = None     # the samples every row ran on
    clients: tuple[ClientRow, ...] = ()  # the files run in deploy clients (--client)
    recommendation: Recommendation | None = field(default=None, metadata=OMIT_NONE)

    def row(self, name: str) -> ValidationRow | None:
        return next((r for r in self.artifacts if r.name == name), None)


# --------------------------------------------------------------------------- incremental.json
# ``RUN/incremental.json``: the history of a run grown class by class (``edge-transfer
# extend``, :mod:`edge_transfer.train.incremental`), one StepFigures per step, each on the test
# split of that step's data. Step 0 is the run the first extension started from; each later step
# says which classes came, the memory kept per class, the accuracy on all / old / new
# classes, the old classes' accuracy before the step on the same images (paired), the
# forgetting per old class (before - after) and the baselines on the same images.


@dataclass(frozen=True)
class BaselineFigures(Record):
    """A baseline's accuracies on the same test images, and the method against it
    (``method_vs``: method - baseline on all classes, paired)."""

    all_accuracy: float
    old_accuracy: float | None = None
    new_accuracy: float | None = None
    method_vs: Comparison | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class StepFigures(Record):
    """One step of a run's class-incremental history (fractions in [0, 1])."""

    step: int
    run: str
    classes: tuple[str, ...]                 # the classes this step added
    total_classes: int
    memory_per_class: int
    memory_bytes: int
    test_samples: int
    all_accuracy: float
    old_accuracy: float | None = None
    new_accuracy: float | None = None
    old_before: float | None = None
    old_samples: int | None = None
    old_change: Comparison | None = field(default=None, metadata=OMIT_NONE)
    forgetting: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, BaselineFigures] = field(default_factory=dict)
    seconds: float | None = None


@dataclass(frozen=True)
class IncrementalHistory(FileRecord):
    """``RUN/incremental.json`` (see the section's comment above).

    >>> step = StepFigures(step=0, run="runs/a", classes=("0", "1"), total_classes=2,
    ...                    memory_per_class=20, memory_bytes=0, test_samples=90,
    ...                    all_accuracy=0.97)
    >>> IncrementalHistory(steps=(step,)).curve()
    [(0, 2, 0.97)]
    """

    FILE_NAME: ClassVar[str] = "incremental.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    ERROR: ClassVar[type[UserError]] = ModelError
    MAKE: ClassVar[str] = "extend the run again with `edge-transfer extend`"

    steps: tuple[StepFigures, ...]

    @property
    def last(self) -> StepFigures:
        return self.steps[-1]

    def curve(self) -> list[tuple[int, int, float]]:
        """(step, classes so far, all-class accuracy) per step."""
        return [(s.step, s.total_classes, s.all_accuracy) for s in self.steps]


# --------------------------------------------------------------------------- report.json


@dataclass(frozen=True)
class ReportRow(Record):
    """One artifact of a report: export record and device measurement side by side."""

    name: str
    status: str
    format: str | None = None
    precision: str | None = None
    qat: bool = False
    sparsity: float | None = None
    reason: str | None = None
    export_status: str | None = None
    device_status: str | None = None
    file: str | None = None
    bytes: int | None = None
    gzip_bytes: int | None = None
    ratio_to_fp32: float | None = None
    workstation_accuracy: float | None = None
    device_accuracy: float | None = None
    device_samples: int | None = None
    reference_accuracy: float | None = None
    delta_vs_float: float | None = None
    device_gap: float | None = None
    latency_p50_ms: float | None = None
    fps: float | None = None
    peak_memory_mb: float | None = None
    checks: dict[str, str] = field(default_factory=dict)
    agreement_top1: float | None = None
    max_abs_diff: float | None = None
    # Per-sample figures (issue 12): top-1 per sample of the workstation on the test split
    # (``predictions``), of the device (``device_predictions``) and of the workstation on the
    # device's samples (``reference_predictions``); Wilson 95% intervals (low, high) of the
    # two accuracies; paired comparisons with the float model and device vs workstation;
    # a warning when the file is at chance or predicts one class.
    predictions: str | None = None
    device_predictions: str | None = None
    reference_predictions: str | None = None
    workstation_interval: tuple[float, ...] | None = None
    device_interval: tuple[float, ...] | None = None
    vs_float: Comparison | None = None
    device_vs_workstation: Comparison | None = None
    health: str | None = None
    # A QAT or pruned file: its fine-tune and its conversion, each paired (export.json's)
    steps: TrainedSteps | None = field(default=None, metadata=OMIT_NONE)
    clients: tuple[ClientRow, ...] = ()   # this file in deploy clients (validate --client)
    latency: LatencyStats | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class TransferFigures(Record):
    """A report's ``transfer``: the run's figures from metrics.json (transfer vs scratch on
    the test split, source accuracy before / after), the gain and the forgetting (before -
    after); with both models' test predictions the gain is paired (``transfer_gain_low`` /
    ``_high``: its 95% interval, ``transfer_gain_p``: exact McNemar), else those are absent.
    ``test_samples`` is the test split's size (a float in the files, as it always was)."""

    test_accuracy: float | None = None
    val_accuracy: float | None = None
    scratch_test_accuracy: float | None = None
    source_accuracy_before: float | None = None
    source_accuracy_after: float | None = None
    transfer_gain: float | None = None
    forgetting: float | None = None
    test_samples: float | None = None
    transfer_gain_low: float | None = field(default=None, metadata=OMIT_NONE)
    transfer_gain_high: float | None = field(default=None, metadata=OMIT_NONE)
    transfer_gain_p: float | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class ReportFiles(Record):
    markdown: str = "report.md"
    plot: str | None = "accuracy_vs_size.png"
    confusion: str | None = None
    latency_plots: tuple[str, ...] = ()   # accuracy_vs_latency[_DEVICE].png, one per device


@dataclass(frozen=True)
class Report(FileRecord):
    """``REPORT/report.json``: one row per artifact, the figures ``check`` compares."""

    FILE_NAME: ClassVar[str] = "report.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    MAKE: ClassVar[str] = "build it again with `edge-transfer report RUN`"

    data_fingerprint: str
    artifacts: tuple[ReportRow, ...]
    run: str | None = None
    export: str | None = None
    validation: str | None = None
    labels: tuple[str, ...] = ()
    float_accuracy: float | None = None
    device: DeviceInfo | None = None
    transfer: TransferFigures | None = None
    files: ReportFiles | None = None
    samples: SampleIds | None = None          # the test samples of workstation figures
    device_samples: SampleIds | None = None   # the samples the device ran
    float_predictions: str | None = None
    float_interval: tuple[float, ...] | None = None
    warnings: tuple[str, ...] = ()
    incremental: IncrementalHistory | None = field(default=None, metadata=OMIT_NONE)
    recommendations: tuple[Recommendation, ...] = ()   # one per device validated


# --------------------------------------------------------------------------- bench --json


@dataclass(frozen=True)
class BenchRow(Record):
    """One artifact of the benchmark table (FPS = 1000 / p50 ms at batch 1)."""

    name: str
    format: str
    precision: str
    status: str
    size_mb: float
    reason: str | None = None
    samples: int | None = None
    accuracy: float | None = None
    workstation_accuracy: float | None = None
    ms_per_image: float | None = None
    fps: float | None = None
    batched_fps: float | None = None
    emulated: bool = False
    agreement_top1: float | None = None
    latency: LatencyStats | None = field(default=None, metadata=OMIT_NONE)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class BenchTable(FileRecord):
    """What ``edge-transfer bench --json OUT`` writes: the rows and the validation beside."""

    FILE_NAME: ClassVar[str] = "bench.json"
    SCHEMA_VERSION: ClassVar[int] = 1
    ERROR: ClassVar[type[UserError]] = DeviceError
    MAKE: ClassVar[str] = "write it again with `edge-transfer bench SOURCE --json OUT`"

    source: str
    device: DeviceInfo
    rows: tuple[BenchRow, ...]
    validation: ValidationResult
    data: str | None = None
    min_accuracy: float | None = None
    below_min_accuracy: tuple[str, ...] = ()
    recommendation: Recommendation | None = field(default=None, metadata=OMIT_NONE)

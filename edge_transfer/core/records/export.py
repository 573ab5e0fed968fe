"""``RUN/export/export.json`` (:class:`ExportRecord`): every variant an export produced or
failed to produce (:class:`ExportArtifact`), its check against the Keras model, how
``--keep-float auto`` chose, where the time went and how a drop was judged."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edge_transfer.core.errors import ExportError
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records.base import OMIT_NONE, FileRecord, Record
from edge_transfer.core.records.paired import Comparison, SampleIds


@dataclass(frozen=True)
class ExportDecision(Record):
    """How ``export`` judged an accuracy drop (``decide``: ``significant`` or ``point``)."""

    max_accuracy_drop: float
    alpha: float = 0.05
    decide: str = "significant"


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
class ExportRecord(FileRecord, file="export.json", version=1, error=ExportError,
                   make="export the run again (`edge-transfer export RUN`)"):
    """``RUN/export/export.json``: every variant an export produced or failed to produce."""

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

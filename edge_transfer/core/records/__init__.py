"""The JSON files edge-transfer writes and reads: one frozen, typed record per file.

    file                      record              module       written by / read by
    RUN/run.json              RunInfo             run          pretrain, finetune / Run, report
    RUN/metrics.json          RunMetrics          run          pretrain, finetune / report, runs
    RUN/export/export.json    ExportRecord        export       export / bundle, report, bench
    RUN/export/diagnose.json  DiagnoseRecord      diagnose     diagnose, export --diagnose
    RUN/incremental.json      IncrementalHistory  incremental  extend / report, check
    BUNDLE/manifest.json      Manifest            manifest     bundle / validate (device)
    validate --json OUT       ValidationResult    validation   validate / report, bench
    REPORT/report.json        Report              report       report / check
    bench --json OUT          BenchTable          bench        bench

One module per job: :mod:`~edge_transfer.core.records.base` is the typed-JSON framework
(``Record``, ``FileRecord``, ``MalformedRecord``, ``OMIT_NONE``, ``json_key``, ``as_dict``);
each schema module describes one file (above); :mod:`~edge_transfer.core.records.paired`
(``SampleIds``, ``Comparison``) and :mod:`~edge_transfer.core.records.device` (``DeviceInfo``,
``DeviceRow``, ``LatencyStats``, ``Recommendation``) hold the rows several files share.
The schemas import the framework and the shared rows, never the reverse, and no module of
the package imports this ``__init__``.

How to import: from the module that owns the name, so the import shows which file a caller
depends on (``from edge_transfer.core.records.manifest import Manifest``). This package
re-exports every public name for one release, so ``edge_transfer.core.records.X`` (and the
deprecated ``edge_transfer.records.X``, :mod:`edge_transfer.core.moved`) keep working;
release 0.3 may drop the re-exports.

Each file record names its file, schema version, error and fix once, in its class line
(``class Manifest(FileRecord, file="manifest.json", version=1, ...)``); ``load(path)``
reads and checks it, ``dump(path)`` writes it through :mod:`edge_transfer.core.atomic`;
``from_dict`` / ``to_dict`` convert by the fields' types. The JSON keys are the field names.
A missing, unreadable, malformed or too-new file is a :class:`~edge_transfer.core.errors.UserError`
subclass (the record's ``ERROR``, or the caller's ``error=``) whose message names the fix.

To add a figure to a file, add a field with a default to its record: older files (without
the key) still load, and readers that do not know the key ignore it. A field declared with
``field(default=None, metadata=OMIT_NONE)`` is left out of the JSON while it is None; one
declared with ``metadata=json_key("class")`` is written under that key (a Python keyword).
Importing this package needs numpy and nothing heavier (the device side uses it).

>>> from edge_transfer.core.records.manifest import ManifestArtifact
>>> row = ManifestArtifact(name="tflite-int8", file="model-int8.tflite", format="tflite",
...                        precision="int8", sha256="ab" * 32, bytes=1234)
>>> ManifestArtifact.from_dict(row.to_dict()) == row
True
>>> ManifestArtifact.from_dict({**row.to_dict(), "bytes": "many"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
edge_transfer.core.records.base.MalformedRecord: bytes: expected int, got 'many'
"""

from __future__ import annotations

from edge_transfer.core.records.base import (
    OMIT_NONE,
    FileRecord,
    MalformedRecord,
    Record,
    as_dict,
    json_key,
)
from edge_transfer.core.records.bench import BenchRow, BenchTable
from edge_transfer.core.records.device import DeviceInfo, DeviceRow, LatencyStats, Recommendation
from edge_transfer.core.records.diagnose import DiagnoseRecord, Diagnosis, LayerDiagnosis
from edge_transfer.core.records.export import (
    ArtifactOutcome,
    ExportArtifact,
    ExportCheck,
    ExportDecision,
    ExportRecord,
    ExportTiming,
    KeepFloatSearch,
    KeepFloatTry,
    TensorRecord,
    TrainedSteps,
)
from edge_transfer.core.records.incremental import (
    BaselineFigures,
    IncrementalHistory,
    StepFigures,
)
from edge_transfer.core.records.manifest import Manifest, ManifestArtifact
from edge_transfer.core.records.paired import Comparison, SampleIds
from edge_transfer.core.records.report import Report, ReportFiles, ReportRow, TransferFigures
from edge_transfer.core.records.run import (
    RunBackbone,
    RunData,
    RunInfo,
    RunMetrics,
    RunStrategy,
    SplitSizes,
)
from edge_transfer.core.records.validation import (
    Agreement,
    BudgetCheck,
    ClientRow,
    ValidationResult,
    ValidationRow,
)

__all__ = [
    "OMIT_NONE",
    "Agreement",
    "ArtifactOutcome",
    "BaselineFigures",
    "BenchRow",
    "BenchTable",
    "BudgetCheck",
    "ClientRow",
    "Comparison",
    "DeviceInfo",
    "DeviceRow",
    "DiagnoseRecord",
    "Diagnosis",
    "ExportArtifact",
    "ExportCheck",
    "ExportDecision",
    "ExportRecord",
    "ExportTiming",
    "FileRecord",
    "IncrementalHistory",
    "KeepFloatSearch",
    "KeepFloatTry",
    "LatencyStats",
    "LayerDiagnosis",
    "MalformedRecord",
    "Manifest",
    "ManifestArtifact",
    "Recommendation",
    "Record",
    "Report",
    "ReportFiles",
    "ReportRow",
    "RunBackbone",
    "RunData",
    "RunInfo",
    "RunMetrics",
    "RunStrategy",
    "SampleIds",
    "SplitSizes",
    "StepFigures",
    "TensorRecord",
    "TrainedSteps",
    "TransferFigures",
    "ValidationResult",
    "ValidationRow",
    "as_dict",
    "json_key",
]

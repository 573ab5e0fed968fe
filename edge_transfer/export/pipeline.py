"""Export a run's model to every asked format and precision, and check each file.

For each variant: convert (exporters/<format>.py), embed labels and preprocessing, load the
file in LiteRT / ONNX Runtime, compare it with the float Keras model on the run's test split
(the split that chose no epoch; the bundle's sample is that same split; a QAT or pruned file
also with its trained model, :mod:`exporters.steps`), and record it in
``export.json`` as ``ok`` or ``failed`` with the reason. An accuracy drop fails a variant when
it is beyond ``max_accuracy_drop`` and significant at ``alpha`` (paired, exact McNemar;
``decide="point"``: beyond the tolerance alone). ``export.json`` keeps the samples' identity
(``samples``) and the float model's and every file's top-1 prediction per sample. One failed
variant never stops the others; :attr:`ExportResult.ok` is False if any failed (the CLI then
exits 1).

Post-training variants convert side by side in spawned worker processes when the model is big
enough to gain from it and memory allows (``jobs``; 1: one after another in this process, see
:mod:`edge_transfer.export.workers`); QAT, pruned and int8-mixed variants, which train or
search in this process first, convert here after them. ``export.json`` is the same either way
apart from the timings: each variant's convert and check seconds, and ``timing`` (wall time,
workers, sums).

Not run as a doctest (it needs a fine-tuned run directory; tests/test_export_*.py export one):

>>> result = export_run("runs/target", ExportConfig(precisions=("fp32", "int8")))  # doctest: +SKIP
>>> [(a.name, a.status) for a in result.artifacts]                      # doctest: +SKIP
[('tflite-fp32', 'ok'), ('tflite-int8', 'ok'), ('onnx-fp32', 'ok'), ('onnx-int8', 'ok')]
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import exporters
from edge_transfer.core import interrupts, stats
from edge_transfer.core.errors import ExportError, ModelError, UserError
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records.export import ExportDecision, ExportRecord, ExportTiming
from edge_transfer.core.records.paired import SampleIds
from edge_transfer.core.samples import encode
from edge_transfer.export import keep_float as mixed
from edge_transfer.export import workers as export_workers
from edge_transfer.export.config import ExportConfig, calibration_data, load_run_model, output_dir
from edge_transfer.export.variant import CheckData, convert_variant
from edge_transfer.runtime.metadata import About, ModelMetadata
from edge_transfer.train.runs import Run, versions
from exporters import Artifact, Calibration, ExportOptions, ExportSpec, KerasSource
from exporters.check import check_outputs, failure_reason
from exporters.failures import conversion_failure
from exporters.steps import step_of

if TYPE_CHECKING:
    from edge_transfer.export.diagnose import Sample

EXPORT_FILE = ExportRecord.FILE_NAME
PREVIOUS_FILE = f".{EXPORT_FILE}.previous"

Progress = Callable[[str, int, int], None]
@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` produced; :meth:`to_record` is ``export.json``."""

    run: Path
    out_dir: Path
    data_fingerprint: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    float_accuracy: float
    artifacts: tuple[Artifact, ...]
    preparation_seconds: dict[str, float]
    samples: SampleIds | None = None        # the test samples every check ran on
    float_predictions: str | None = None    # the Keras model's top-1 on them (encoded)
    decision: ExportDecision | None = None
    timing: ExportTiming | None = None
    float_health: str | None = None         # the float model at chance / on one class

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.artifacts)

    @property
    def path(self) -> Path:
        return self.out_dir / EXPORT_FILE

    def get(self, name: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        raise KeyError(f"no artifact {name!r}; have {[a.name for a in self.artifacts]}")

    def to_record(self) -> ExportRecord:
        """The ``export.json`` record, with the package versions of this process."""
        return ExportRecord(
            run=str(self.run), data_fingerprint=self.data_fingerprint, labels=self.labels,
            preprocessing=self.preprocessing, float_accuracy=self.float_accuracy,
            versions=versions(),
            artifacts=tuple(a.to_record(self.out_dir) for a in self.artifacts),
            samples=self.samples, float_predictions=self.float_predictions,
            decision=self.decision, timing=self.timing, float_health=self.float_health)

    def to_json(self) -> dict[str, Any]:
        return self.to_record().to_dict()


def _check_model(model: Any, run: Run) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(
            f"{run.model_path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "export needs one image input and one probabilities output")
    if tuple(model.input_shape[1:]) != run.preprocessing.input_shape:
        raise ModelError(
            f"{run.model_path} takes {tuple(model.input_shape[1:])} but preprocessing.json says "
            f"{run.preprocessing.input_shape}; fix preprocessing.json or retrain")


def _retire_record(out: Path) -> None:
    """Before any artifact is rewritten, move the previous ``export.json`` aside
    (``.export.json.previous``, kept until the new record is written): a run killed midway
    leaves no record that lists a file as good, and the next run still knows which old files
    to remove. Half-written temporaries of a killed run are deleted."""
    record = out / EXPORT_FILE
    if record.is_file():
        record.replace(out / PREVIOUS_FILE)
    _remove_temporaries(out)


def _remove_temporaries(out: Path) -> None:
    """Our own half-written files in ``out`` (a killed run's, or a killed worker's)."""
    for pattern in (".model-*.tmp", f".{EXPORT_FILE}.tmp"):
        for tmp in out.glob(pattern):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)


class _Sources:
    """The Keras models to convert: the run's own, and on demand its QAT and pruned copies."""

    def __init__(self, model: Any, run: Run, config: ExportConfig, workdir: Path,
                 x_val: CheckData, progress: Callable[[str], None]) -> None:
        self.run, self.config, self.workdir = run, config, workdir
        self.x_val, self.progress = x_val, progress
        self._built: dict[str, tuple[KerasSource, np.ndarray] | ExportError] = {}
        self._built["float"] = self._wrap(model)
        self.seconds: dict[str, float] = {}
        self.notes: dict[str, tuple[str, ...]] = {}   # e.g. QAT: layers left in float

    def _wrap(self, model: Any) -> tuple[KerasSource, np.ndarray]:
        # converted behind the pixel adapter: RGB pixels in, normalization inside the file
        source = KerasSource(model, self.workdir, in_graph=self.run.preprocessing)
        return source, self.x_val.predict(lambda x: model.predict(x, verbose=0,
                                                                   batch_size=256))

    @cached_property
    def search_data(self) -> Sample:
        """``--keep-float auto``'s data, the same for every format (read and predicted once):
        at most ``mixed.SEARCH_SAMPLES`` validation images with the float model right or
        wrong on each, and the ``mixed.MEASURE_SAMPLES`` the per-layer errors are measured
        on."""
        from edge_transfer.export.diagnose import validation_sample

        model = self.get(ExportSpec.fp32())[0].model
        return validation_sample(self.run, model, mixed.SEARCH_SAMPLES, mixed.MEASURE_SAMPLES,
                                 self.config.seed)

    def get(self, spec: ExportSpec) -> tuple[KerasSource, np.ndarray]:
        key = "qat" if spec.qat else "pruned" if spec.sparsity is not None else "float"
        if key not in self._built:
            self._built[key] = self._make(key, spec)
        built = self._built[key]
        if isinstance(built, ExportError):
            raise built
        return built

    def _make(self, key: str, spec: ExportSpec) -> tuple[KerasSource, np.ndarray] | ExportError:
        from edge_transfer.train import optimize

        start = time.perf_counter()
        model = self._built["float"]
        assert not isinstance(model, ExportError)
        epochs, seed = self.config.qat_epochs, self.config.seed
        x, y = _training_data(self.run, seed)
        try:
            if key == "qat":
                self.progress("QAT fine-tune")
                notes: list[str] = []
                built = self._wrap(optimize.quantization_aware(model[0].model, x, y,
                                                               epochs=epochs, seed=seed,
                                                               notes=notes))
                self.notes[key] = tuple(notes)
            else:
                self.progress(f"pruning to {spec.sparsity}")
                pruned = optimize.prune(model[0].model, x, y, sparsity=float(spec.sparsity or 0),
                                        epochs=epochs, seed=seed)
                built = self._wrap(pruned.model)
        except Exception as exc:
            interrupts.check(exc)   # a signal in training is an interrupt, not a failure
            return conversion_failure(key, exc)
        finally:
            self.seconds[key] = time.perf_counter() - start
        interrupts.check()
        return built


def _training_data(run: Run, seed: int) -> tuple[Any, np.ndarray]:
    """QAT / pruning data: the training split as arrays when small, else a stream."""
    from edge_transfer.data.tfdata import Batching, cached_in_memory, from_dataset
    from edge_transfer.train.optimize import BATCH_SIZE

    train, pre = run.splits.train, run.preprocessing
    if cached_in_memory(train, pre):
        return pre.apply(train.x.read()), train.y
    return from_dataset(train, pre, Batching(BATCH_SIZE, shuffle=True, seed=seed)), train.y


def export_run(run_dir: str | Path, config: ExportConfig | None = None, *,
               progress: Progress | None = None,
               worker: export_workers.Worker | None = None) -> ExportResult:
    """Export, check and record every variant of ``config``; writes ``export.json``.

    ``progress(what, done, total)`` is called as the export goes on; with worker processes
    also from a thread of this process that waits for them (a rich ``Progress`` is safe).
    ``worker`` is the function a worker process runs per variant (default
    :func:`edge_transfer.export.workers.run_task`; tests pass one that crashes)."""
    started = time.perf_counter()
    if export_workers.importing_main():
        raise ExportError("export was called while a worker process of an export imported the "
                          'main script again: put the export under `if __name__ == "__main__":`')
    config = config or ExportConfig()
    run = Run.open(run_dir)
    out = output_dir(run_dir, config)
    variants = config.variants()
    report: Progress = progress or (lambda _name, _done, _total: None)
    report("loading model", 0, len(variants))
    by_index: dict[int, Artifact] = {}
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="edge-transfer-export-")))
        workers = _workers(stack, run, config, variants, work, worker)
        model = load_run_model(run, unsafe_load=config.unsafe_load)
        _check_model(model, run)
        loaded = time.perf_counter() - started
        job = _job(run_dir, run, config, out, variants, report, work, model)
        workers = _started(workers)
        jobs = workers.jobs if workers is not None else 1
        reference = _float_and_workers(job, model, workers, loaded, by_index)
        if workers is not None:
            workers.close()   # before QAT / pruning train here: their memory is free again
        interrupts.check()
        _convert_here(job, reference, by_index)
        report("done", len(variants), len(variants))
    result = _result(job, reference, by_index, started, jobs)
    _remove_stale(out, {a.path.name for a in result.artifacts if a.path is not None})
    result.to_record().dump(result.path)
    (out / PREVIOUS_FILE).unlink(missing_ok=True)
    if config.diagnose:
        _diagnose(run_dir, config, out, report)
    return result


@dataclass(frozen=True, eq=False)
class _Job:
    """One export's inputs every step shares, once the model has loaded."""

    run: Run
    config: ExportConfig
    out: Path
    variants: list[tuple[str, ExportSpec]]
    report: Progress
    workdir: Path
    x_val: CheckData
    y_val: np.ndarray
    meta: ModelMetadata
    options: ExportOptions
    calibration: Calibration


@dataclass(frozen=True, eq=False)
class _Float:
    """The float model on the test split, which every variant is judged against, and the
    sources the variants convert from."""

    sources: _Sources
    outputs: np.ndarray
    top1: np.ndarray
    accuracy: float
    health: str | None
    judge: _Judge


def _side_by_side(variants: list[tuple[str, ExportSpec]]) -> list[int]:
    """The variants a worker converts: those that need nothing trained or searched first
    (the post-training ones)."""
    return [k for k, (_, spec) in enumerate(variants) if spec.post_training]


def _workers(stack: contextlib.ExitStack, run: Run, config: ExportConfig,
             variants: list[tuple[str, ExportSpec]], work: Path,
             worker: export_workers.Worker | None) -> export_workers.Workers | None:
    """The worker processes (None: one variant after another here); they start while the
    model loads here."""
    model_file = run.model_path
    jobs = export_workers.choose_jobs(config.jobs, len(_side_by_side(variants)),
                                      model_file.stat().st_size if model_file.is_file() else 0)
    if jobs <= 1:
        return None
    return stack.enter_context(export_workers.Workers(jobs, work, run.path, worker))


def _job(run_dir: str | Path, run: Run, config: ExportConfig, out: Path,
         variants: list[tuple[str, ExportSpec]], report: Progress, work: Path,
         model: Any) -> _Job:
    """The output folder made and its old record retired (the model has loaded), the test
    split to check on, the files' metadata and the calibration."""
    output_dir(run_dir, config, create=True)
    _retire_record(out)
    test = run.splits.test
    x_val, y_val = CheckData(test, run.preprocessing), test.y
    meta = ModelMetadata(labels=run.labels, preprocessing=run.preprocessing,
                         about=About.of(run.path.name, run.labels, config.model_name,
                                        config.model_version, config.author, config.license))
    options = ExportOptions(opset=config.opset)
    calibration = calibration_data(run, config, str(model.input_names[0]))
    return _Job(run, config, out, variants, report, work, x_val, y_val, meta, options,
                calibration)


def _float_and_workers(job: _Job, model: Any, workers: export_workers.Workers | None,
                       loaded: float, by_index: dict[int, Artifact]) -> _Float:
    """The float model's outputs while the workers (if any) convert the post-training
    variants; theirs judged into ``by_index``. On any failure the workers stop and what
    they were writing is removed."""
    total = len(job.variants)
    try:
        converting = (None if workers is None else _start_in_workers(
            [(k, *job.variants[k]) for k in _side_by_side(job.variants)], workers, job.run,
            job.config, job.calibration, job.out, job.meta, job.options,
            lambda name, n: job.report(name, n, total)))
        reference = _float_outputs(job, model, loaded,
                                   lambda what: job.report(what, len(by_index), total))
        if workers is not None and converting is not None:
            by_index.update(_judge_all(converting.result(), reference.judge,
                                       reference.outputs))
            if len(by_index) < total:   # the rest convert here: from the
                export_workers.adopt_shared(    # workers' SavedModel and ONNX graph
                    reference.sources.get(ExportSpec.fp32())[0], workers.shared)
    except BaseException:
        if workers is not None:
            workers.stop()
        _remove_temporaries(job.out)   # what a terminated worker was writing
        raise
    return reference


def _float_outputs(job: _Job, model: Any, loaded: float,
                   progress: Callable[[str], None]) -> _Float:
    """The float model run over the test split (while workers convert), and its health."""
    start = time.perf_counter()
    sources = _Sources(model, job.run, job.config, job.workdir, job.x_val, progress)
    sources.seconds["load"] = loaded
    outputs = sources.get(ExportSpec.fp32())[1]
    top1 = np.argmax(outputs, axis=1)
    accuracy = float(np.mean(top1 == job.y_val))
    health = float_model_health(accuracy, top1, job.run, model)
    sources.seconds["float"] = time.perf_counter() - start
    return _Float(sources, outputs, top1, accuracy, health,
                  _Judge(job.y_val, accuracy, job.config, outputs))


def _convert_here(job: _Job, reference: _Float, by_index: dict[int, Artifact]) -> None:
    """The variants no worker converted, one after another in this process."""
    for k, (fmt, spec) in enumerate(job.variants):
        if k in by_index:
            continue
        job.report(f"{fmt}-{spec.name}", len(by_index), len(job.variants))
        by_index[k] = _export_variant(fmt, spec, reference.sources, job.calibration, job.out,
                                      job.meta, job.options, reference.judge, job.config)


def _result(job: _Job, reference: _Float, by_index: dict[int, Artifact], started: float,
            jobs: int) -> ExportResult:
    """The export's result (``export.json``), the failures' advice reworded."""
    run, config = job.run, job.config
    artifacts = _advise([by_index[k] for k in range(len(job.variants))], run.path,
                        reference.accuracy, config, len(run.labels))
    preparation = {k: round(v, 3) for k, v in reference.sources.seconds.items()}
    return ExportResult(run=run.path, out_dir=job.out, data_fingerprint=run.data_fingerprint,
                        labels=run.labels, preprocessing=run.preprocessing,
                        float_accuracy=reference.accuracy, artifacts=tuple(artifacts),
                        preparation_seconds=preparation,
                        samples=SampleIds.of(run.data_fingerprint, "test", job.y_val),
                        float_predictions=encode(reference.top1),
                        decision=ExportDecision(config.max_accuracy_drop, config.alpha,
                                                config.decide),
                        timing=_timing(artifacts, started, jobs, preparation),
                        float_health=reference.health)


def float_model_health(accuracy: float, top1: np.ndarray, run: Run, model: Any) -> str | None:
    """One line when the float model is at chance, below it or predicts one class on the
    check data (:func:`stats.health_warning`): every variant "passes" by matching it, so the
    line says that, and what to train differently
    (:func:`~edge_transfer.train.health.untrained_hint`)."""
    from edge_transfer.train.health import untrained_hint
    from edge_transfer.train.models import has_batchnorm

    line = stats.health_of(accuracy, len(top1), len(run.labels), top1, run.labels,
                           what="the float model")
    if line is None:
        return None
    if stats.below_chance(stats.wilson(round(accuracy * len(top1)), len(top1)),
                          len(run.labels)):      # the line names the cause and the fix
        return (f"{line}; this is on the test split, so each variant's check only shows it "
                "matches a model that does not work")
    rate = run.info.args.get("learning_rate")
    return (f"{line} on the test split, so each variant's check only shows it matches a model "
            f"that does not work; {untrained_hint(has_batchnorm(model), rate)}")


def _timing(artifacts: list[Artifact], started: float, jobs: int,
            preparation: dict[str, float]) -> ExportTiming:
    return ExportTiming(
        wall_seconds=round(time.perf_counter() - started, 3), jobs=jobs,
        convert_seconds=round(sum(a.seconds or 0.0 for a in artifacts), 3),
        check_seconds=round(sum(a.check_seconds or 0.0 for a in artifacts), 3),
        preparation_seconds=preparation)


@dataclass(frozen=True, eq=False)
class _Judge:
    """Judges a file's outputs against the float model's (``float_outputs``), and checks
    them against the Keras model it was converted from (``reference``: for a QAT or pruned
    file its fine-tuned copy, whose two steps the check then records)."""

    y: np.ndarray
    float_accuracy: float
    config: ExportConfig
    float_outputs: np.ndarray

    def __call__(self, artifact: Artifact, outputs: np.ndarray,
                 reference: np.ndarray) -> Artifact:
        config, spec = self.config, artifact.spec
        check = check_outputs(outputs, reference, self.y, precision=spec.precision,
                              float_accuracy=self.float_accuracy,
                              max_drop=config.max_accuracy_drop, alpha=config.alpha,
                              rule=config.rule, float_reference=self.float_outputs,
                              step=step_of(spec.qat, spec.sparsity))
        artifact = dataclasses.replace(artifact, check=check)
        if not check.passed:
            return artifact.failed(failure_reason(check, float_accuracy=self.float_accuracy,
                                                  max_drop=config.max_accuracy_drop,
                                                  rule=config.rule))
        return artifact


def _started(workers: export_workers.Workers | None) -> export_workers.Workers | None:
    """``workers`` once they have started; None (with a warning) when they died starting:
    then every variant converts in this process, as with ``--jobs 1``."""
    why = workers.start_failure() if workers is not None else None
    if workers is None or why is None:
        return workers
    print(f"warning: {why}; converting in this process instead", file=sys.stderr, flush=True)
    workers.stop()
    return None


def _start_in_workers(variants: list[tuple[int, str, ExportSpec]],
                      workers: export_workers.Workers, run: Run, config: ExportConfig,
                      calibration: Calibration, out: Path, meta: ModelMetadata,
                      options: ExportOptions, report: Callable[[str, int], None]
                      ) -> Future[dict[int, export_workers.Outcome]]:
    """The float model's variants, converted by the worker processes from the run's model
    file while this process goes on (each outcome still to judge)."""
    work = workers.workdir
    np.save(work / "calibration.npy", calibration.x)
    shared = workers.shared
    shared.mkdir()
    tasks = [export_workers.Task(
        index=k, fmt=fmt, spec=spec, run=run.path, unsafe_load=config.unsafe_load,
        cache_dir=shared, calibration=work / "calibration.npy",
        input_name=calibration.input_name, calibration_method=calibration.method,
        out_dir=out, metadata=meta, options=options)
        for k, fmt, spec in variants]
    report(f"{len(tasks)} variants in {workers.jobs} worker processes", 0)
    finished: list[int] = []

    def done(task: export_workers.Task, _outcome: export_workers.Outcome) -> None:
        finished.append(task.index)
        report(task.name, len(finished))

    return workers.convert_in_background(tasks, done)


def _judge_all(outcomes: dict[int, export_workers.Outcome], judge: _Judge,
               reference: np.ndarray) -> dict[int, Artifact]:
    return {k: (judge(o.artifact, o.outputs, reference)
                if o.artifact.ok and o.outputs is not None else o.artifact)
            for k, o in outcomes.items()}


def _advise(artifacts: list[Artifact], run: Path, float_accuracy: float,
            config: ExportConfig, classes: int) -> list[Artifact]:
    """Reword each accuracy failure's advice with the next step known to work (advice.py)."""
    from edge_transfer.export.advice import next_step

    out = []
    for a in artifacts:
        if not a.ok and a.check is not None and not a.check.passed:
            a = a.failed(failure_reason(a.check, float_accuracy=float_accuracy,
                                        max_drop=config.max_accuracy_drop,
                                        advice=next_step(a, artifacts, run, classes),
                                        rule=config.rule))
        out.append(a)
    return out


def _auto_keep_float(fmt: str, spec: ExportSpec, sources: _Sources, calibration: Calibration,
                     config: ExportConfig) -> tuple[ExportSpec, mixed.Choice]:
    """``--keep-float auto``: the spec with the layers the search chose (see mixed.py), on
    at most ``mixed.SEARCH_SAMPLES`` validation images, read a batch at a time (the check
    that judges the variant runs on the whole test split)."""
    from edge_transfer.export.diagnose import quantizer, quiet
    from edge_transfer.export.quant_signs import first_ranges

    source = sources.get(ExportSpec.fp32())[0]
    try:
        with quiet():
            q = quantizer(fmt, source, calibration, opset=config.opset, keras_model=source.model)
        data = sources.search_data
        choice = mixed.choose(q, data, max_drop=config.max_accuracy_drop, alpha=config.alpha,
                              rule=config.rule, conversions=config.keep_float_conversions,
                              max_bytes=config.keep_float_max_bytes,
                              ranges=first_ranges(source.model, data.x_measure))
    except Exception as exc:
        raise conversion_failure(f"{fmt}-{spec.name} (--keep-float auto)", exc) from exc
    return dataclasses.replace(spec, keep_float=choice.layers), choice


def _diagnose(run_dir: str | Path, config: ExportConfig, out: Path, report: Progress) -> None:
    """``export --diagnose``: diagnose.json and plots for each asked format's int8."""
    from edge_transfer.export.diagnose import MEASURABLE, DiagnoseConfig, diagnose_run

    for fmt in config.formats:
        if "int8" in MEASURABLE.get(fmt, ()):
            report(f"diagnosing {fmt} int8", 0, 1)
            diagnose_run(run_dir, DiagnoseConfig(
                format=fmt, calibration_samples=config.calibration_samples,
                calibration_method=config.calibration_method, opset=config.opset,
                out=out, seed=config.seed, unsafe_load=config.unsafe_load))


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Delete the files a previous export.json in ``out`` listed that this export did not
    write again, so the folder holds what its export.json describes."""
    try:
        previous = ExportRecord.load(out / PREVIOUS_FILE).artifacts
    except UserError:  # none, or unreadable: nothing known to remove
        return
    suffixes = tuple(exporters.get(f).SUFFIX for f in exporters.available())
    for record in previous:
        name = record.file
        if (name is not None and "/" not in name and "\\" not in name
                and name.endswith(suffixes) and name not in keep):
            (out / name).unlink(missing_ok=True)


def _export_variant(fmt: str, spec: ExportSpec, sources: _Sources, calibration: Calibration,
                    out: Path, meta: ModelMetadata, options: ExportOptions, judge: _Judge,
                    config: ExportConfig) -> Artifact:
    """One variant in this process, as ``--jobs 1`` does them all: ``--keep-float auto``'s
    search first, QAT or pruning on first use."""
    notes: tuple[str, ...] = ()
    search = None
    if spec.keep_float == ("auto",):
        try:
            spec, choice = _auto_keep_float(fmt, spec, sources, calibration, config)
        except ExportError as exc:
            interrupts.check(exc)
            return Artifact(fmt, spec, status="failed", reason=str(exc))
        search = choice.search
        notes = choice.notes(config.max_accuracy_drop,
                             config.rule)
    artifact = _export_one(fmt, spec, sources, calibration, out, meta, options, judge)
    if search is not None and artifact.bytes is not None:
        search = dataclasses.replace(search, file_bytes=artifact.bytes)
        wrong = mixed.file_mismatch(search, artifact.bytes)
        if wrong is not None and artifact.ok:
            artifact = artifact.failed(wrong)
    if spec.qat:
        notes += sources.notes.get("qat", ())
    return dataclasses.replace(artifact, notes=artifact.notes + notes, keep_float_search=search)


def _export_one(fmt: str, spec: ExportSpec, sources: _Sources, calibration: Calibration,
                out: Path, meta: ModelMetadata, options: ExportOptions,
                judge: _Judge) -> Artifact:
    pending = Artifact(fmt, spec, status="failed")  # until it is made and checked
    start = time.perf_counter()
    try:
        source, reference = sources.get(spec)
        start = time.perf_counter()
        artifact, outputs = convert_variant(fmt, spec, source, calibration, out, meta, options,
                                            sources.x_val)
    except Exception as exc:
        interrupts.check(exc)   # a signal in a converter is an interrupt, not a failed variant
        failed = pending.failed(str(conversion_failure(pending.name, exc)))
        return dataclasses.replace(failed, seconds=round(time.perf_counter() - start, 3))
    interrupts.check()          # ... also when the converter swallowed it
    return judge(artifact, outputs, reference)


def results_table(result: ExportResult) -> Any:
    """A rich table: format, precision, status, size, ratio to fp32, accuracy with its 95%
    interval, and the paired difference from the float model (interval, McNemar p)."""
    from rich.table import Table

    float_iv = _interval(result.float_accuracy, result.samples)
    where = f" on {result.samples.describe()}" if result.samples else ""
    table = Table(title=f"export of {result.run} (float accuracy {float_iv}{where})",
                  caption="accuracy: % [95% Wilson interval]; Δ vs float: paired difference "
                          "[95% Newcombe interval], exact McNemar p. An interval that spans 0 "
                          "is no evidence of a change.")
    for column in ("format", "precision", "status", "size", "gzip", "× fp32", "accuracy",
                   "Δ vs float", "p", "convert s", "check s"):
        table.add_column(column, justify="left" if column in ("format", "precision",
                                                              "status") else "right")
    fp32 = {a.format: a.bytes for a in result.artifacts
            if a.spec == ExportSpec.fp32() and a.bytes}
    for a in result.artifacts:
        ratio = f"{a.bytes / fp32[a.format]:.2f}" if a.bytes and a.format in fp32 else "-"
        status = "[green]ok[/]" if a.ok else f"[red]failed[/]: {a.reason}"
        accuracy = "-" if a.accuracy is None else _interval(a.accuracy, result.samples)
        cmp = a.check.vs_float if a.check is not None else None
        if cmp is not None:
            delta = (f"{cmp.difference * 100:+.1f} pt [{cmp.low * 100:+.1f}, "
                     f"{cmp.high * 100:+.1f}]")
            p_value = stats.format_p(cmp.p_value)
        else:
            delta = ("-" if a.accuracy is None
                     else f"{(a.accuracy - result.float_accuracy) * 100:+.1f} pt")
            p_value = "-"
        table.add_row(a.format, a.spec.name, status, _size(a.bytes), _size(a.gzip_bytes), ratio,
                      accuracy, delta, p_value, _seconds(a.seconds), _seconds(a.check_seconds))
    return table


def timing_line(timing: ExportTiming | None) -> str | None:
    """Where the time went, in one line: wall time against the variants' summed seconds.

    >>> from edge_transfer.core.records.export import ExportTiming
    >>> timing = ExportTiming(wall_seconds=50.0, jobs=2, convert_seconds=80.0,
    ...                       check_seconds=4.0, preparation_seconds={"load": 3.0})
    >>> print(timing_line(timing))  # doctest: +NORMALIZE_WHITESPACE
    time: 50.0 s wall with 2 worker processes; the variants took 84.0 s one after another
    (convert 80.0 s + check 4.0 s), preparation 3.0 s: together 1.74x the wall time
    """
    t = timing
    if t is None:
        return None
    how = "in this process" if t.jobs == 1 else f"with {t.jobs} worker processes"
    preparation = sum(t.preparation_seconds.values())
    line = (f"time: {t.wall_seconds:.1f} s wall {how}; the variants took "
            f"{t.variant_seconds:.1f} s one after another (convert {t.convert_seconds:.1f} s "
            f"+ check {t.check_seconds:.1f} s), preparation {preparation:.1f} s")
    if t.jobs > 1 and t.wall_seconds > 0:
        gain = (t.variant_seconds + preparation) / t.wall_seconds
        line += f": together {gain:.2f}x the wall time"
    return line


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def result_notes(result: ExportResult) -> list[str]:
    """Warnings worth one line each: a float model at chance or collapsed onto one class,
    and a check whose samples are too few to resolve a drop of the tolerance's size."""
    notes = [result.float_health] if result.float_health else []
    under = {a.check.underpowered for a in result.artifacts
             if a.check is not None and a.check.underpowered}
    notes += [f"export checks: {u} (use more test data, or --max-accuracy-drop larger)"
              for u in sorted(under)][:1]
    return notes


def _interval(accuracy: float, samples: SampleIds | None) -> str:
    if samples is None or not samples.count:
        return f"{accuracy:.4f}"
    return stats.wilson(round(accuracy * samples.count), samples.count).points()


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MB"


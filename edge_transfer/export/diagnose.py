"""Which layers break when a model is quantized, and why: ``edge-transfer diagnose RUN``.

Per layer of the converted graph, on validation samples: the *local* error (what the layer
adds by itself, given quantized inputs) and the *cumulative* error (what has built up by its
output against the float model), both relative (0.01 = 1 % noise, 1.0 = signal gone), ranked
by local error, each with a one-line reading. TFLite int8 measures through
``tf.lite.experimental.QuantizationDebugger``; ONNX static int8 through
``onnxruntime.quantization.qdq_loss_debug``. The same ranking drives ``--keep-float auto``.
The float and int8 accuracies beside it are on a fixed stratified sample of at most
``ACCURACY_SAMPLES`` validation images, read a batch at a time.

>>> d = diagnose_run("runs/target", DiagnoseConfig(format="tflite"))      # doctest: +SKIP
>>> d.layers[0].layer, d.layers[0].reading                                # doctest: +SKIP
('conv2', 'int8 rounds 98% of its weights to zero (largest weight 9000x the median)')
>>> DiagnoseConfig(format="onnx", precision="int16x8")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
edge_transfer.core.errors.UnsupportedExportError: diagnose cannot measure onnx int16x8 ...
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import exporters
from edge_transfer.core.errors import UnsupportedExportError
from edge_transfer.core.fields import renamed
from edge_transfer.core.records.diagnose import DiagnoseRecord, Diagnosis, LayerDiagnosis
from exporters import ExportOptions
from exporters.diagnosis import Quantizer

DIAGNOSE_FILE = DiagnoseRecord.FILE_NAME
MEASURABLE = {name: ("int8",) for name in exporters.available()}  # each has a quantizer
ACCURACY_SAMPLES = 2000      # validation images (at most) the two accuracies are measured on


@dataclass(frozen=True)
class DiagnoseConfig:
    """What to diagnose; validated on construction."""

    format: str = "tflite"
    precision: str = "int8"
    samples: int = 64            # validation images the per-layer errors are measured on
    calibration_samples: int = 100
    calibration_method: str = "minmax"
    opset: int = 17
    top: int = 10                # rows of the table
    out: Path | None = None      # default RUN/export
    seed: int = 0
    unsafe_load: bool = False
    out_dir: InitVar[Path | None] = None  # the old name of out, accepted for one release

    def __post_init__(self, out_dir: Path | None) -> None:
        renamed(self, "out_dir", "out", out_dir)
        if self.format not in MEASURABLE:
            raise UnsupportedExportError(
                f"unknown format {self.format!r}; diagnose measures {', '.join(MEASURABLE)}")
        if self.precision not in MEASURABLE[self.format]:
            can = "; ".join(f"{f}: {', '.join(p)}" for f, p in MEASURABLE.items())
            raise UnsupportedExportError(
                f"diagnose cannot measure {self.format} {self.precision} ({can}); fully "
                "quantized int8 is where per-layer error decides accuracy: use --precision int8")
        if self.samples < 1 or self.calibration_samples < 1 or self.top < 1:
            raise UnsupportedExportError(
                "--samples, --calibration-samples and --top must be at least 1")


# --- measuring -----------------------------------------------------------------------------


def quantizer(fmt: str, source: Any, calibration: Any, *, opset: int = 17,
              keras_model: Any | None = None) -> Quantizer:
    """Calibrate ``source`` once for ``fmt`` (the expensive part of an int8 conversion), on
    the Keras model's own input (``source.plain``: per-layer work, without the pixel adapter),
    through the format's own per-layer quantizer (:class:`exporters.Exporter`)."""
    return exporters.get(fmt).quantizer(source.plain, calibration,
                                        options=ExportOptions(opset=opset),
                                        keras_model=keras_model)


@dataclass(frozen=True, eq=False)
class Sample:
    """What a quantized model is judged on: a fixed stratified sample of a run's validation
    split (read a batch at a time) with the float model's per-image correctness on it, and
    the few images the per-layer errors are measured on. ``diagnose``'s two accuracies and
    ``--keep-float auto``'s tries (paired with float) both use it."""

    data: Any                     # edge_transfer.export.variant.CheckData
    float_correct: np.ndarray     # the float model right or wrong, per image of ``data``
    x_measure: np.ndarray

    @property
    def float_accuracy(self) -> float:
        return float(np.mean(self.float_correct))

    def correct(self, quantizer: Quantizer, model: Any) -> np.ndarray:
        """A quantized model right or wrong, per image of ``data`` (in its order)."""
        with quiet():
            outputs = self.data.predict_file(quantizer.serialize(model), quantizer.fmt)
        return np.asarray(outputs.argmax(1) == self.data.y)


def validation_sample(run: Any, model: Any, count: int, measure: int,
                      seed: int = 0) -> Sample:
    """At most ``count`` validation images (streamed; the float model run over them once)
    and ``measure`` of them as arrays, both fixed stratified samples of ``seed``."""
    from edge_transfer.export.variant import CheckData
    from edge_transfer.train.inference import predict_split

    data = CheckData.sample(run, "val", count, seed)
    float_out = predict_split(model, data.split, data.preprocessing)
    return Sample(data, np.asarray(float_out.argmax(1) == data.y),
                  run.sample_arrays("val", measure, seed)[0])


def ranked(layers: tuple[LayerDiagnosis, ...]) -> tuple[LayerDiagnosis, ...]:
    """Most harmful first: by local error, then cumulative."""
    return tuple(sorted(layers, key=lambda la: (-la.local, -la.cumulative, la.depth)))


# --- the command's work ----------------------------------------------------------------------


def diagnose_run(run_dir: str | Path, config: DiagnoseConfig | None = None) -> Diagnosis:
    """Measure, write ``diagnose.json`` (all diagnoses of the folder) and the depth plot."""
    import tempfile

    from edge_transfer.export.config import (
        ExportConfig,
        calibration_data,
        load_run_model,
        output_dir,
    )
    from edge_transfer.export.quant_signs import first_ranges, signs
    from edge_transfer.train.runs import Run
    from exporters import KerasSource

    config = config or DiagnoseConfig()
    run = Run.open(run_dir)
    export_config = ExportConfig(formats=(config.format,), precisions=("int8",),
                                 calibration_samples=config.calibration_samples,
                                 calibration_method=config.calibration_method,
                                 opset=config.opset, out=config.out, seed=config.seed)
    out = output_dir(run_dir, export_config)
    model = load_run_model(run, unsafe_load=config.unsafe_load)
    out = output_dir(run_dir, export_config, create=True)
    # Only what is measured is read: config.samples images for the per-layer errors, and at
    # most ACCURACY_SAMPLES (a fixed stratified sample) streamed for the two accuracies.
    sample = validation_sample(run, model, ACCURACY_SAMPLES, config.samples, config.seed)
    with tempfile.TemporaryDirectory(prefix="edge-transfer-diagnose-") as work:
        source = KerasSource(model, Path(work))
        calibration = calibration_data(run, export_config, source.input_name)
        start = time.perf_counter()
        with quiet():
            q = quantizer(config.format, source, calibration, opset=config.opset,
                          keras_model=model)
            int8 = q.quantize(())
            layers = q.measure(sample.x_measure, int8)
        quantized = sample.correct(q, int8)
        seconds = time.perf_counter() - start
    found = signs(layers, first_ranges(model, sample.x_measure))
    plot = out / f"diagnose-{config.format}-{config.precision}.png"
    diagnosis = Diagnosis(
        run=str(run.path), format=config.format, precision=config.precision,
        samples=len(sample.x_measure), float_accuracy=sample.float_accuracy,
        quantized_accuracy=float(np.mean(quantized)),
        seconds=round(seconds, 3), layers=ranked(layers), plot=plot.name,
        by_depth=tuple(la.layer for la in layers), signs=found)
    plot_errors(diagnosis, plot)
    others = [d for d in load_diagnoses(out)
              if (d.format, d.precision) != (config.format, config.precision)]
    DiagnoseRecord(diagnoses=(*others, diagnosis)).dump(out)
    return diagnosis


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the converters' native logs and the debug interpreters' warnings."""
    from edge_transfer.core.keras import quiet_native_stderr

    with quiet_native_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def load_diagnoses(folder: Path) -> list[Diagnosis]:
    """The diagnoses recorded in ``folder/diagnose.json`` (none if absent)."""
    path = Path(folder) / DIAGNOSE_FILE
    if not path.is_file():
        return []
    return list(DiagnoseRecord.load(path).diagnoses)


def markdown_section(export_dir: Path, out_dir: Path) -> str:
    """The report's "Quantization diagnosis" section: each diagnosis of ``export_dir``
    (worst layers, readings) with its error-vs-depth plot copied next to the report, and the
    layers int8-mixed variants kept in float. Empty when there is neither."""
    import shutil

    from edge_transfer.core.records.export import ExportRecord

    lines: list[str] = []
    for d in load_diagnoses(export_dir):
        if not lines:
            lines += ["", "## Quantization diagnosis", ""]
        lines += [f"### {d.format} {d.precision}: float {d.float_accuracy:.4f}, quantized "
                  f"{d.quantized_accuracy:.4f} ({d.samples} samples)", "",
                  "| rank | layer | op | local | cumulative | reading |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {k} | {la.layer} | {la.op_type} | {la.local:.3f} | {la.cumulative:.3f} | "
                  f"{la.reading} |" for k, la in enumerate(d.layers[:5], 1)]
        lines += [""] + [f"- ⚠ {sign}" for sign in d.signs] if d.signs else []
        plot = Path(export_dir) / str(d.plot) if d.plot else None
        if plot is not None and plot.is_file():
            if plot.resolve() != (Path(out_dir) / plot.name).resolve():
                shutil.copyfile(plot, Path(out_dir) / plot.name)
            lines += ["", f"![{d.format} {d.precision} error against depth]({plot.name})"]
        lines.append("")
    try:
        record = ExportRecord.load(Path(export_dir))
    except Exception:  # the report itself already read (and judged) export.json
        return "\n".join(lines)
    mixed = [a for a in record.artifacts if a.kept_float is not None]
    if mixed:
        lines += ["", "## Layers kept in float (int8-mixed)", ""]
        lines += [f"- **{a.name}**: {', '.join(a.kept_float or ()) or 'none (plain int8)'}"
                  for a in mixed]
        lines.append("")
    return "\n".join(lines)


def plot_errors(diagnosis: Diagnosis, path: Path) -> None:
    """Local and cumulative error against depth (log scale); the worst layers named."""
    from matplotlib.figure import Figure

    from edge_transfer.core.atomic import write_bytes_atomic

    by_name = {la.layer: la for la in diagnosis.layers}
    layers = [by_name[name] for name in diagnosis.by_depth if name in by_name]
    depth = [la.depth for la in layers]
    floor = 1e-4
    fig = Figure(figsize=(8, 4), dpi=100)
    ax = fig.add_subplot()
    ax.plot(depth, [max(la.cumulative, floor) for la in layers], "-", color="tab:red",
            label="cumulative (vs float model)")
    ax.bar(depth, [max(la.local, floor) for la in layers], color="tab:blue", alpha=0.6,
           label="local (added by the layer)")
    for la in diagnosis.layers[:3]:
        ax.annotate(la.layer, (la.depth, max(la.local, floor)), textcoords="offset points",
                    xytext=(0, 4), ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("layer depth (graph order)")
    ax.set_ylabel("relative error (RMS noise / RMS signal)")
    ax.set_title(f"{diagnosis.format} {diagnosis.precision}: float "
                 f"{diagnosis.float_accuracy:.3f}, quantized {diagnosis.quantized_accuracy:.3f}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())


def table(diagnosis: Diagnosis, top: int = 10) -> Any:
    """A rich table of the ``top`` worst layers."""
    from rich.table import Table

    table = Table(title=f"{diagnosis.format} {diagnosis.precision} of {diagnosis.run}: float "
                        f"{diagnosis.float_accuracy:.4f}, quantized "
                        f"{diagnosis.quantized_accuracy:.4f} ({diagnosis.samples} samples, "
                        f"{diagnosis.seconds:.1f} s)")
    for column in ("rank", "layer", "op", "depth", "local", "cumulative", "reading"):
        table.add_column(column, justify="right" if column in ("rank", "depth", "local",
                                                               "cumulative") else "left")
    for k, la in enumerate(diagnosis.layers[:top], 1):
        table.add_row(str(k), la.layer, la.op_type, str(la.depth), f"{la.local:.3f}",
                      f"{la.cumulative:.3f}", la.reading)
    return table

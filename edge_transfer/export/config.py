"""What to export (:class:`ExportConfig`, validated on construction) and the export's inputs
every step shares: the run's model, its output folder, the calibration data. Split from
pipeline.py so that diagnose and int8-mixed use them without importing the pipeline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import exporters
from edge_transfer.core import stats
from edge_transfer.core.errors import UnsupportedExportError
from edge_transfer.core.fields import option, renamed
from edge_transfer.train.runs import Run
from exporters import Calibration, ExportOptions, ExportSpec

MAX_CONVERSIONS = 7          # the --keep-float-conversions default (stated in --help)
MAX_BYTES = 1.5              # the --keep-float-max-bytes default: times plain int8's bytes
DECISIONS = stats.RULES  # fail a drop when significant, or on the point estimate alone


@dataclass(frozen=True)
class ExportConfig:
    """What to export; validated on construction (bad input raises UnsupportedExportError).

    Each precision goes to every asked format that can produce it, and must have at least
    one; ``qat`` adds ``int8-qat`` per format; ``prune`` adds ``<precision>-pruned<S>`` for
    ``prune_precisions`` (default: every asked precision).

    >>> ExportConfig(formats=("onnx",), precisions=("int16x8",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edge_transfer.core.errors.UnsupportedExportError: precision int16x8 cannot be exported ...
    """

    formats: tuple[str, ...] = option(("tflite", "onnx"), "comma-separated formats",
                                       names=exporters.available())
    precisions: tuple[str, ...] = option(
        ("fp32", "int8"), "comma-separated precisions; each goes to the asked formats that can "
                          "produce it", names=exporters.PRECISIONS, flag="--precision")
    qat: bool = option(False, "add an int8 variant trained quantization-aware (short "
                               "fine-tune, --qat-epochs)")
    prune: float | None = option(None, "add pruned variants of each precision at this "
                                        "sparsity, e.g. 0.5", metavar="SPARSITY")
    prune_precisions: tuple[str, ...] | None = option(
        None, "comma-separated precisions to prune (default: every asked one)",
        flag="--prune-precision", metavar="PRECISIONS")
    io: str = option("float", "int8 model input/output type (TFLite)", names=exporters.IO_TYPES)
    calibration_samples: int = option(100, "training samples to calibrate int8 ranges",
                                       metavar="N")
    calibration_method: str = option("minmax", "ONNX static int8 calibration",
                                      names=exporters.CALIBRATION_METHODS)
    opset: int = option(17, "ONNX opset")
    out: Path | None = option(None, "output folder (default: RUN/export)")
    max_accuracy_drop: float = option(
        0.05, "a variant (QAT and pruned ones included) fails its check when its accuracy "
              "dropped by more than this below the float model's, and significantly (see "
              "--decide)", metavar="FRACTION")
    alpha: float = option(0.05, "significance level of an accuracy drop (exact McNemar test on "
                                "the same samples)")
    decide: str = option("significant", "significant: fail a drop beyond the tolerance only "
                                        "when it is significant at --alpha; point: on the point "
                                        "estimate alone", choices=DECISIONS)
    qat_epochs: int = option(2, "fine-tune epochs of --qat and --prune", aliases=("--epochs",))
    seed: int = 0
    unsafe_load: bool = option(False, "allow Lambda layers (arbitrary code) in a run's model "
                                       "you trust", aliases=("--unsafe",))
    # int8-mixed: ("auto",) or Keras layer names / op types to keep in float (None: no variant)
    keep_float: tuple[str, ...] | None = option(
        None, "add an int8-mixed variant per format that keeps these Keras layers or op types"
              " (TFLite CONV_2D, MUL...; ONNX Conv, Mul...) in float. auto tries plain int8 "
              "first and keeps no layer when it is within --max-accuracy-drop of float and "
              "(unless --decide point) not significantly below it (paired, on a fixed "
              "stratified sample of at most 2,000 validation images); else it keeps the "
              "layers `edge-transfer diagnose` ranks worst per float byte they cost, 1, 2, 3,"
              " 5, 8... at a time, until it is, in a bounded number of conversions (at most "
              "--keep-float-conversions re-quantizations of one calibration), never past "
              "--keep-float-max-bytes",
        metavar="auto|NAME[,NAME...]|OP_TYPE")
    keep_float_conversions: int = option(
        MAX_CONVERSIONS, "--keep-float auto: at most N re-quantizations, plain int8 "
                               "included (7: up to 13 layers)", metavar="N")
    keep_float_max_bytes: float = option(
        MAX_BYTES, "--keep-float auto: keep no more layers in float than fit in this "
                         "many times the plain int8 file's bytes (a layer's weights cost about "
                         "4x their int8 bytes in float)", metavar="RATIO")
    model_name: str = option("", "name in the files' standard metadata (TFLite ModelMetadata, "
                                 "ONNX metadata_props; default: the run folder's name)")
    model_version: str = option("", "version in the files' standard metadata")
    author: str = option("", "author in the files' standard metadata")
    license: str = option("", "license in the files' standard metadata, e.g. Apache-2.0")
    diagnose: bool = option(False, "also write diagnose.json and error-vs-depth plots for each "
                                   "format's int8 (as `edge-transfer diagnose`)")
    jobs: int | None = option(
        None, "worker processes converting the post-training variants side by side (default: "
              "from the free memory and cores, 1 for a small model; 1: one after another in "
              "this process)", metavar="N")

    # Old names of qat_epochs (hidden, like --epochs) and out, accepted for one release.
    finetune_epochs: dataclasses.InitVar[int | None] = None
    out_dir: dataclasses.InitVar[Path | None] = None

    def __post_init__(self, finetune_epochs: int | None, out_dir: Path | None) -> None:
        renamed(self, "finetune_epochs", "qat_epochs", finetune_epochs)
        renamed(self, "out_dir", "out", out_dir)
        modules = self._check_formats()
        self._check_io(modules)
        self._check_calibration()
        self._check_pruning()
        self._check_decision()
        self._check_keep_float(modules)
        if self.jobs is not None and self.jobs < 1:
            raise UnsupportedExportError(
                f"--jobs {self.jobs} must be at least 1 (1: one variant after another)")

    def _check_formats(self) -> list[exporters.Exporter]:
        """The asked formats' modules, each asked precision made by at least one of them."""
        if not self.formats:
            raise UnsupportedExportError(
                f"no format asked; valid formats: {', '.join(exporters.available())}")
        if not self.precisions and not self.qat:
            raise UnsupportedExportError(
                f"no precision asked; valid precisions: {', '.join(exporters.PRECISIONS)}")
        modules = [exporters.get(name) for name in self.formats]
        for precision in self.precisions:
            ExportSpec(precision)
            if not any(precision in m.PRECISIONS for m in modules):
                can = "; ".join(f"{m.NAME} does {', '.join(m.PRECISIONS)}" for m in modules)
                others = [n for n in exporters.available() if n not in self.formats
                          and precision in exporters.get(n).PRECISIONS]
                fix = f"add --formats {others[0]}" if others else "choose another precision"
                raise UnsupportedExportError(
                    f"precision {precision} cannot be exported to {', '.join(self.formats)} "
                    f"({can}); {fix}")
        return modules

    def _check_io(self, modules: list[exporters.Exporter]) -> None:
        if self.io not in exporters.IO_TYPES:
            raise UnsupportedExportError(
                f"unknown --io {self.io!r}; valid: {', '.join(exporters.IO_TYPES)}")
        if self.io != "float" and not (
            ("int8" in self.precisions or self.qat)
            and any(self.io in m.IO_TYPES for m in modules)
        ):
            raise UnsupportedExportError(
                f"--io {self.io} applies to fully integer TFLite models; add --formats tflite "
                "and --precision int8 (or --qat)")

    def _check_calibration(self) -> None:
        """The calibration's size and method, and the ONNX opset."""
        if self.calibration_samples < 1:
            raise UnsupportedExportError(
                f"--calibration-samples must be at least 1, got {self.calibration_samples}; "
                "100 to 500 is typical")
        if self.calibration_method not in exporters.CALIBRATION_METHODS:
            raise UnsupportedExportError(
                f"unknown calibration method {self.calibration_method!r}; valid: "
                f"{', '.join(exporters.CALIBRATION_METHODS)}")
        ExportOptions(opset=self.opset)

    def _check_pruning(self) -> None:
        if self.prune is not None:
            ExportSpec("fp32").pruned(self.prune)
        unasked = set(self.prune_precisions or ()) - set(self.precisions)
        if unasked:
            raise UnsupportedExportError(
                f"pruned precisions {', '.join(sorted(unasked))} are not among the asked "
                f"precisions {', '.join(self.precisions)}; add them to --precision")

    def _check_decision(self) -> None:
        """The check's tolerance, significance and rule, and the QAT / pruning epochs."""
        if not 0.0 <= self.max_accuracy_drop <= 1.0:
            raise UnsupportedExportError(
                f"max accuracy drop {self.max_accuracy_drop} must be a fraction in 0..1")
        if not 0.0 < self.alpha < 1.0:
            raise UnsupportedExportError(f"--alpha {self.alpha} must be in (0, 1); 0.05 is usual")
        if self.decide not in DECISIONS:
            raise UnsupportedExportError(
                f"unknown --decide {self.decide!r}; valid: {', '.join(DECISIONS)}")
        if self.qat_epochs < 1:
            raise UnsupportedExportError("--qat-epochs (fine-tune epochs of --qat and --prune) "
                                         "must be >= 1")

    def _check_keep_float(self, modules: list[exporters.Exporter]) -> None:
        if self.keep_float is not None:
            if not self.keep_float or ("auto" in self.keep_float and len(self.keep_float) > 1):
                raise UnsupportedExportError(
                    "--keep-float takes auto, or layer names / op types separated by commas")
            if not any("int8" in m.PRECISIONS for m in modules):
                raise UnsupportedExportError("--keep-float needs a format that does int8")
        if self.keep_float_conversions < 1:
            raise UnsupportedExportError("--keep-float-conversions must be at least 1")
        if not self.keep_float_max_bytes >= 1.0:
            raise UnsupportedExportError(
                f"--keep-float-max-bytes {self.keep_float_max_bytes} must be at least 1 (times "
                "the plain int8 file's bytes); 1.5 is the default")

    @property
    def rule(self) -> stats.Rule:
        """``decide`` as the rule :func:`edge_transfer.core.stats.decide` takes."""
        return "point" if self.decide == "point" else "significant"

    def variants(self) -> list[tuple[str, ExportSpec]]:
        """Every (format, spec) to produce, format by format: asked precisions, QAT, pruned."""
        out: list[tuple[str, ExportSpec]] = []
        for name in self.formats:
            module = exporters.get(name)
            io = self.io if self.io in module.IO_TYPES else "float"
            specs = [ExportSpec(p, io=io if p == "int8" else "float")
                     for p in self.precisions if p in module.PRECISIONS]
            if self.qat and "int8" in module.PRECISIONS:
                specs.append(ExportSpec.int8(io=io).with_qat())
            if self.keep_float is not None and "int8" in module.PRECISIONS:
                specs.append(ExportSpec.int8().mixed(self.keep_float))
            if self.prune is not None:
                pruned = self.prune_precisions or self.precisions
                specs += [s.pruned(self.prune) for s in specs
                          if s.post_training and s.precision in pruned]
            out += [(name, spec) for spec in specs]
        return out


def load_run_model(run: Run, unsafe_load: bool = False) -> Any:
    """The run's tf_keras model, loaded in Keras' safe mode unless ``unsafe_load``."""
    return run.load_model(unsafe_load=unsafe_load)


def output_dir(run_dir: str | Path, config: ExportConfig, create: bool = False) -> Path:
    """The export folder (default ``RUN/export``); refuses an existing file. It is created
    (``create=True``) only once the model loaded, so bad input leaves no folder behind."""
    out = Path(config.out) if config.out is not None else Path(run_dir) / "export"
    if out.exists() and not out.is_dir():
        raise UnsupportedExportError(
            f"output folder {out} is a file; pass --out a folder path (it is created)")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UnsupportedExportError(f"cannot create output folder {out}: {exc}") from exc
    return out


def calibration_data(run: Run, config: ExportConfig, input_name: str) -> Calibration:
    """Up to N training samples (seeded shuffle), preprocessed as in training; only those
    N are read."""
    train = run.splits.train
    order = np.random.default_rng(config.seed).permutation(len(train))
    x = run.preprocessing.apply(train.x.read(order[: config.calibration_samples]))
    return Calibration(x, input_name, method=config.calibration_method)

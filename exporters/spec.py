"""The records every exporter shares: what to produce, what it is fed, what it made.

>>> ExportSpec.int8(io="uint8").name
'int8'
>>> ExportSpec.int8().with_qat().pruned(0.5).name
'int8-qat-pruned50'
>>> ExportSpec.int8().mixed(("conv2",)).name
'int8-mixed'
>>> ExportSpec.fp16().pruned(1.5)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
edge_transfer.core.errors.UnsupportedExportError: sparsity 1.5 must lie strictly between 0 and 1...
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core import interrupts
from edge_transfer.core.errors import UnsupportedExportError
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.core.records.export import ArtifactOutcome, ExportArtifact, ExportCheck

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
IO_TYPES = ("float", "int8", "uint8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class ExportSpec:
    """One precision variant: ``fp32``, ``fp16``, ``dynamic``, ``int8``, ``int16x8``.

    ``io`` is the input/output type of a fully integer model (``int8`` only); ``qat`` marks a
    quantization-aware trained int8 model; ``sparsity`` a pruned model. Build one with the
    named constructors, which validate themselves.
    """

    precision: str
    io: str = "float"
    qat: bool = False
    sparsity: float | None = None
    # int8-mixed: Keras layer names / op types kept in float; ("auto",) until chosen
    keep_float: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UnsupportedExportError(
                f"unknown precision {self.precision!r}; valid precisions: {', '.join(PRECISIONS)}"
            )
        if self.io not in IO_TYPES:
            raise UnsupportedExportError(
                f"unknown --io {self.io!r}; valid: {', '.join(IO_TYPES)}"
            )
        if self.io != "float" and self.precision != "int8":
            raise UnsupportedExportError(
                f"--io {self.io} needs a fully integer model; use it with --precision int8"
            )
        if self.qat and self.precision != "int8":
            raise UnsupportedExportError(
                f"quantization-aware training produces int8 models, not {self.precision}"
            )
        if self.keep_float is not None and (self.precision != "int8" or self.qat
                                            or self.io != "float"):
            raise UnsupportedExportError(
                "--keep-float builds an int8-mixed variant from float int8 post-training "
                "quantization; it cannot combine with --qat or --io int8/uint8")
        if self.sparsity is not None and not 0.0 < self.sparsity < 1.0:
            raise UnsupportedExportError(
                f"sparsity {self.sparsity} must lie strictly between 0 and 1, e.g. 0.5"
            )

    @classmethod
    def fp32(cls) -> ExportSpec:
        return cls("fp32")

    @classmethod
    def fp16(cls) -> ExportSpec:
        return cls("fp16")

    @classmethod
    def dynamic(cls) -> ExportSpec:
        """int8 weights, float activations: no calibration data needed."""
        return cls("dynamic")

    @classmethod
    def int8(cls, io: str = "float") -> ExportSpec:
        """int8 weights and activations, calibrated on a representative dataset."""
        return cls("int8", io=io)

    @classmethod
    def int16x8(cls) -> ExportSpec:
        """int16 activations, int8 weights (TFLite only)."""
        return cls("int16x8")

    def with_qat(self) -> ExportSpec:
        return dataclasses.replace(self, qat=True)

    def pruned(self, sparsity: float) -> ExportSpec:
        return dataclasses.replace(self, sparsity=float(sparsity))

    def mixed(self, keep_float: tuple[str, ...]) -> ExportSpec:
        """int8 with ``keep_float`` (Keras layer names or op types) left in float."""
        return dataclasses.replace(self, keep_float=tuple(keep_float))

    @property
    def post_training(self) -> bool:
        """Converted from the model as it is: not QAT-trained, pruned nor int8-mixed.

        >>> ExportSpec.int8().post_training, ExportSpec.int8().with_qat().post_training
        (True, False)
        """
        return not self.qat and self.sparsity is None and self.keep_float is None

    @property
    def name(self) -> str:
        """``<precision>[-qat][-pruned50]``: the artifact name after ``<format>-``."""
        name = self.precision + ("-qat" if self.qat else "")
        if self.keep_float is not None:
            name += "-mixed"
        if self.sparsity is not None:
            name += f"-pruned{round(self.sparsity * 100)}"
        return name



@dataclass(frozen=True)
class ExportOptions:
    """Format-specific knobs, typed; every exporter receives them and takes what it knows."""

    opset: int = 17

    def __post_init__(self) -> None:
        if not 11 <= self.opset <= 21:
            raise UnsupportedExportError(
                f"ONNX opset {self.opset} is outside what tf2onnx supports here; use 11..21 "
                "(17 is the default)"
            )


@dataclass(frozen=True, eq=False)
class Calibration:
    """Calibration data: one iterator of ``{input_name: array}`` for every converter.

    >>> cal = Calibration(np.zeros((3, 8, 8, 1), np.float32), "input_1")
    >>> [batch["input_1"].shape for batch in cal]
    [(1, 8, 8, 1), (1, 8, 8, 1), (1, 8, 8, 1)]
    """

    x: np.ndarray
    input_name: str
    method: str = "minmax"

    def __post_init__(self) -> None:
        if len(self.x) == 0:
            raise UnsupportedExportError("calibration needs at least 1 sample; pass N >= 1")
        if self.method not in CALIBRATION_METHODS:
            raise UnsupportedExportError(
                f"unknown calibration method {self.method!r}; valid: "
                f"{', '.join(CALIBRATION_METHODS)}"
            )

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for k in range(len(self.x)):
            yield {self.input_name: np.ascontiguousarray(self.x[k : k + 1], dtype=np.float32)}

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True, eq=False)
class KerasSource:
    """A tf_keras model to export, with one SavedModel written once and shared by converters.

    ``cache`` lets an exporter keep one intermediate per source (e.g. the float ONNX graph).
    With ``in_graph`` (the model's preprocessing) the converters see :attr:`converted`:
    the model behind :func:`~edge_transfer.train.models.pixel_adapter`, which takes RGB pixels
    0..255 and normalizes inside the graph; :attr:`plain` is the same source without it
    (what per-layer diagnosis works on).
    """

    model: Any
    workdir: Path
    cache: dict[str, Any] = field(default_factory=dict)
    in_graph: Preprocessing | None = None

    @cached_property
    def converted(self) -> Any:
        """The Keras model the converters convert: ``model``, behind the pixel adapter
        when ``in_graph`` is set."""
        if self.in_graph is None:
            return self.model
        from edge_transfer.train.models import pixel_adapter

        return pixel_adapter(self.model, self.in_graph)

    @cached_property
    def plain(self) -> KerasSource:
        """This source without the pixel adapter (same model, work folder and cache: the
        cache keys of adapted intermediates say so, see :attr:`key_suffix`)."""
        if self.in_graph is None:
            return self
        return KerasSource(self.model, self.workdir, self.cache)

    @property
    def key_suffix(self) -> str:
        """``"-pixels"`` for a source converted behind the pixel adapter, else ``""``: part
        of every cache key of an intermediate, so plain and adapted graphs never mix."""
        return "" if self.in_graph is None else "-pixels"

    def calibration(self, calibration: Calibration) -> Calibration:
        """``calibration`` (the Keras model's input) as the converted model takes it: RGB
        pixels 0..255 when the adapter is in front."""
        if self.in_graph is None:
            return calibration
        return Calibration(self.in_graph.rgb_pixels(calibration.x), calibration.input_name,
                           calibration.method)

    @property
    def input_name(self) -> str:
        return str(self.model.input_names[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The converted model's input shape, without the batch axis."""
        if self.in_graph is not None:
            return self.in_graph.pixels_in().input_shape
        return tuple(int(d) for d in self.model.input_shape[1:])

    def input_signature(self) -> list[Any]:
        """``[tf.TensorSpec([None, H, W, C], float32, name=input_name)]``: dynamic batch axis."""
        from edge_transfer.core.keras import load

        tf, _ = load()
        return [tf.TensorSpec([None, *self.input_shape], tf.float32, name=self.input_name)]

    @cached_property
    def saved_model(self) -> Path:
        """:attr:`converted` as a SavedModel (``serving_default``), written on first use.

        What is saved is the signature and the model's variables, not the Keras model: saving
        that also traces every layer's own functions for Keras to load them back, which no
        converter reads (5-7x the time: 5.9 s against 0.8 s for a 32 px MobileNetV2, 15 s
        against 2.3 s for its QAT model). The converted files are the same bytes
        (tests/test_export_tflite.py). A model whose functions hold a resource outside its
        variables is saved the Keras way, as before."""
        from edge_transfer.core.keras import load

        tf, _ = load()
        path = Path(tempfile.mkdtemp(prefix="saved_model-", dir=self.workdir))
        model = self.converted

        @tf.function(input_signature=self.input_signature())
        def serve(x: Any) -> dict[str, Any]:
            return {"probabilities": model(x, training=False)}

        root = tf.Module()
        root.model_variables = list(model.variables)
        try:
            tf.saved_model.save(root, str(path), signatures=serve)
        except Exception as exc:   # a resource the variables do not hold: the Keras way
            interrupts.check(exc)
            shutil.rmtree(path)
            path.mkdir(mode=0o700)   # as mkdtemp made it
            tf.saved_model.save(model, str(path), signatures=serve)
        return path


Check = ExportCheck
"""The exported file compared with its Keras model on the test split."""


@dataclass(frozen=True)
class Artifact(ArtifactOutcome):
    """One exported variant (its outcome fields:
    :class:`~edge_transfer.core.records.ArtifactOutcome`);
    ``status`` is ``ok`` only after its check passed."""

    format: str
    spec: ExportSpec
    path: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.format}-{self.spec.name}"

    @property
    def accuracy(self) -> float | None:
        return None if self.check is None else self.check.accuracy

    def failed(self, reason: str) -> Artifact:
        return dataclasses.replace(self, status="failed", reason=reason)

    def to_record(self, relative_to: Path) -> ExportArtifact:
        """The artifact row of ``export.json`` (``file`` relative to its folder)."""
        file = None
        if self.path is not None:
            file = Path(self.path).resolve().relative_to(Path(relative_to).resolve()).as_posix()
        return ExportArtifact(
            name=self.name, format=self.format, precision=self.spec.precision,
            qat=self.spec.qat, sparsity=self.spec.sparsity, io=self.spec.io, file=file,
            accuracy=self.accuracy, kept_float=self.spec.keep_float, **self.outcome())

    def to_json(self, relative_to: Path) -> dict[str, Any]:
        """:meth:`to_record` as the JSON object of ``export.json``."""
        return self.to_record(relative_to).to_dict()

"""What every exporter does with its converted bytes: write them, measure them, and read
them back through the device's runtime code (:mod:`edge_transfer.runtime`)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_transfer.core import interrupts
from edge_transfer.core.atomic import write_bytes_atomic
from edge_transfer.core.errors import ConversionError, one_line
from edge_transfer.core.records.export import TensorRecord
from edge_transfer.runtime.backends import open_backend, run_float
from edge_transfer.runtime.metadata import ModelMetadata, embedded_metadata
from exporters.spec import Artifact, Calibration, ExportSpec, KerasSource


@dataclass(frozen=True)
class FileFacts:
    bytes: int
    gzip_bytes: int
    sha256: str


def file_facts(data: bytes) -> FileFacts:
    """Size, gzip size (what pruning pays off in) and sha256 of a file's content.

    >>> file_facts(b"abc").sha256[:8]
    'ba7816bf'
    """
    return FileFacts(
        bytes=len(data),
        gzip_bytes=len(gzip.compress(data, compresslevel=9, mtime=0)),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def describe(model: bytes | Path, fmt: str) -> tuple[tuple[TensorRecord, ...],
                                                       tuple[TensorRecord, ...]]:
    """Inputs and outputs (names, shapes with -1 for a dynamic axis, dtypes, quantization)
    of a model file of format ``fmt``, as the device's runtime sees them."""
    backend = open_backend(model, format=fmt)
    return (backend.input.to_record(),), (backend.output.to_record(),)


def predict(path: Path, x: np.ndarray, fmt: str) -> np.ndarray:
    """Float outputs of a model file on ``x``, the Keras model's float input, through the
    device's runtime code (:func:`edge_transfer.runtime.backends.run_float`: integer I/O
    quantized as there); a file that normalizes inside its graph gets ``x`` as the RGB
    pixels it stands for."""
    backend = open_backend(Path(path), format=fmt)
    meta = embedded_metadata(backend, Path(path))
    if meta is not None and meta.in_graph is not None:
        x = meta.in_graph.rgb_pixels(x)
    return run_float(backend, x)


def pixels_in(source: KerasSource, spec: ExportSpec, calibration: Calibration,
              metadata: ModelMetadata) -> tuple[KerasSource, Calibration, ModelMetadata]:
    """What a variant converts, is calibrated on and says in its metadata: with the pixel
    adapter in front (``source.in_graph`` set: RGB pixels 0..255 in, normalization inside,
    the metadata saying so). An int8-mixed variant's metadata also names the layers it keeps
    in float (``keep_float``)."""
    if spec.keep_float is not None:
        metadata = dataclasses.replace(metadata, keep_float=tuple(spec.keep_float))
    if source.in_graph is None:
        return source.plain, calibration, metadata
    return source, source.calibration(calibration), metadata.pixels_in()


def write_artifact(fmt: str, suffix: str, spec: ExportSpec, data: bytes,
                   out_dir: Path) -> Artifact:
    """``out_dir/model-<spec.name><suffix>`` written atomically, as an :class:`Artifact`;
    a :class:`ConversionError` and no file when the device's runtime cannot load ``data``
    (e.g. a Flex or custom op)."""
    name = f"{fmt}-{spec.name}"
    try:
        inputs, outputs = describe(data, fmt)   # before writing: no file it cannot run
    except Exception as exc:
        interrupts.check(exc)
        raise ConversionError(f"{name}: the {fmt} runtime cannot run the converted file "
                              f"({one_line(exc, 400, first=True)}); no file was written"
                              ) from exc
    path = Path(out_dir) / f"model-{spec.name}{suffix}"
    write_bytes_atomic(path, data)
    facts = file_facts(data)
    return Artifact(fmt, spec, status="ok", path=path, bytes=facts.bytes,
                    gzip_bytes=facts.gzip_bytes, sha256=facts.sha256, inputs=inputs,
                    outputs=outputs)

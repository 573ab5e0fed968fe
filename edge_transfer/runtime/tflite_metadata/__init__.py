"""Standard TFLite metadata: what MediaPipe Tasks, the TFLite Support library and Android
Studio's model binding read from a ``.tflite``, written and read without TensorFlow.

The schema is tflite-support's ``metadata_schema.fbs``; :mod:`.metadata_schema_generated`
is Python code that ``flatc`` generated from it (provenance in its header; regenerate with
:mod:`.regenerate`). It needs only the ``flatbuffers`` package, which LiteRT and ONNX Runtime
already depend on. Neither tflite-support (wheels stop at old Pythons) nor MediaPipe's own
writer (it fails to import in current MediaPipe wheels) is needed.

Packed as tflite-support's ``MetadataPopulator`` packs it: the ``ModelMetadata`` flatbuffer
(file identifier ``M001``) in a buffer named by the model's ``TFLITE_METADATA`` entry, and
the associated files (here ``labels.txt``) appended to the model as an uncompressed zip.

>>> info = describe(("cat", "dog"), mean=(0.0,), std=(1.0,), name="pets")
>>> read_standard(standard_metadata(info)).labels_file, read_standard(standard_metadata(info)).std
('labels.txt', (1.0,))
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"   # every field written here is in the schema since 1.0.0
LABELS_FILE = "labels.txt"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)   # fixed: the same model gives the same bytes


@dataclass(frozen=True)
class StandardInfo:
    """What the standard metadata of an image classifier says.

    ``mean`` and ``std`` are the ``NormalizationOptions`` a client applies to RGB pixels
    0..255 before the (float) input: one value for all channels, or three.
    """

    labels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = "image classifier"
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    labels_file: str = LABELS_FILE


def describe(labels: tuple[str, ...], *, mean: tuple[float, ...], std: tuple[float, ...],
             name: str = "image classifier", description: str = "", version: str = "",
             author: str = "", license: str = "") -> StandardInfo:
    """A :class:`StandardInfo` (description defaulted from the labels)."""
    description = description or (
        f"Classifies an RGB image into {len(labels)} classes: {', '.join(labels[:10])}"
        f"{', ...' if len(labels) > 10 else ''}.")
    return StandardInfo(tuple(labels), tuple(mean), tuple(std), name, description, version,
                        author, license)


def standard_metadata(info: StandardInfo) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) of an image classifier: one
    RGB image input with its normalization, one probabilities output with its labels file."""
    import flatbuffers

    from edge_transfer.runtime.tflite_metadata import metadata_schema_generated as fb

    model: Any = fb.ModelMetadataT()
    model.name, model.description = info.name, info.description
    model.version = info.version or None
    model.author = info.author or None
    model.license = info.license or None
    model.minParserVersion = MIN_PARSER_VERSION
    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [_image_input(fb, info)]
    subgraph.outputTensorMetadata = [_probabilities(fb, info)]
    model.subgraphMetadata = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), FILE_IDENTIFIER)
    return bytes(builder.Output())


def _image_input(fb: Any, info: StandardInfo) -> Any:
    tensor = fb.TensorMetadataT()
    tensor.name = "image"
    tensor.description = "RGB image, pixel values 0..255, normalized as the process unit says."
    image = fb.ImagePropertiesT()
    image.colorSpace = fb.ColorSpaceType.RGB
    tensor.content = _content(fb, fb.ContentProperties.ImageProperties, image)
    norm = fb.NormalizationOptionsT()
    norm.mean, norm.std = list(info.mean), list(info.std)
    unit = fb.ProcessUnitT()
    unit.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    unit.options = norm
    tensor.processUnits = [unit]
    stats = fb.StatsT()
    stats.min = [(0.0 - m) / s for m, s in zip(info.mean, info.std, strict=True)]
    stats.max = [(255.0 - m) / s for m, s in zip(info.mean, info.std, strict=True)]
    tensor.stats = stats
    return tensor


def _probabilities(fb: Any, info: StandardInfo) -> Any:
    tensor = fb.TensorMetadataT()
    tensor.name = "probability"
    tensor.description = "Probability of each class, in the order of the labels file."
    tensor.content = _content(fb, fb.ContentProperties.FeatureProperties,
                              fb.FeaturePropertiesT())
    labels = fb.AssociatedFileT()
    labels.name = info.labels_file
    labels.description = "Labels for the classes the model recognizes, one per line."
    labels.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    tensor.associatedFiles = [labels]
    stats = fb.StatsT()
    stats.min, stats.max = [0.0], [1.0]
    tensor.stats = stats
    return tensor


def _content(fb: Any, kind: int, properties: Any) -> Any:
    content = fb.ContentT()
    content.contentPropertiesType = kind
    content.contentProperties = properties
    return content


def labels_text(labels: tuple[str, ...]) -> bytes:
    """The labels file: one label per line, UTF-8.

    >>> labels_text(("cat", "dog"))
    b'cat\\ndog\\n'
    """
    return "".join(f"{label}\n" for label in labels).encode()


def append_files(model: bytes, files: dict[str, bytes]) -> bytes:
    """``model`` with ``files`` appended as an uncompressed zip, as tflite-support's populator
    appends associated files (a zip reader finds them from the end of the file; the model's
    flatbuffer, read from the start, is unchanged). Fixed timestamps: reproducible bytes.

    >>> packed = append_files(b"TFL3model", {"labels.txt": b"a\\n"})
    >>> packed.startswith(b"TFL3model"), read_files(packed)
    (True, {'labels.txt': b'a\\n'})
    """
    buffer = io.BytesIO(model)
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), data)
    return buffer.getvalue()


def read_files(data: bytes) -> dict[str, bytes]:
    """The associated files packed into a model (empty when there are none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}


@dataclass(frozen=True)
class ReadBack:
    """What a reader finds in the standard metadata (the parts this project writes)."""

    name: str
    description: str
    version: str
    author: str
    license: str
    min_parser_version: str
    color_space: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels_file: str


def read_standard(buffer: bytes) -> ReadBack:
    """Parse a ``ModelMetadata`` flatbuffer (the ``TFLITE_METADATA`` buffer) with the
    schema's generated reader."""
    from edge_transfer.runtime.tflite_metadata import metadata_schema_generated as fb

    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0):
        raise ValueError("not a TFLite ModelMetadata flatbuffer (no M001 identifier)")
    meta = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(buffer, 0))
    subgraph = meta.subgraphMetadata[0]
    image, output = subgraph.inputTensorMetadata[0], subgraph.outputTensorMetadata[0]
    spaces = {v: k for k, v in vars(fb.ColorSpaceType).items() if not k.startswith("_")}
    norm = next(u.options for u in image.processUnits or ()
                if u.optionsType == fb.ProcessUnitOptions.NormalizationOptions)
    labels = next(f.name for f in output.associatedFiles or ()
                  if f.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS)

    def text(value: bytes | None) -> str:
        return "" if value is None else value.decode()

    return ReadBack(text(meta.name), text(meta.description), text(meta.version),
                    text(meta.author), text(meta.license), text(meta.minParserVersion),
                    spaces[image.content.contentProperties.colorSpace],
                    tuple(float(v) for v in norm.mean), tuple(float(v) for v in norm.std),
                    text(labels))

"""Labels and preprocessing inside model files, so one file is enough on a device.

A ``.tflite`` carries a flatbuffer ``Metadata`` entry named ``edge_transfer`` that points at a
buffer of UTF-8 JSON; an ``.onnx`` carries the same JSON in ``metadata_props["edge_transfer"]``.
Reading needs no TensorFlow (LiteRT's flatbuffer schema, ONNX Runtime's model metadata).

>>> meta = ModelMetadata(labels=("cat", "dog"), preprocessing=Preprocessing(8, 8))
>>> ModelMetadata.from_json(meta.to_json()) == meta
True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edge_transfer.core import interrupts
from edge_transfer.core.errors import ModelError
from edge_transfer.core.preprocessing import Preprocessing

METADATA_KEY = "edge_transfer"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class About:
    """Who made a model and under what terms: the standard metadata's name, description,
    version, author and license (empty: not written)."""

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""

    @classmethod
    def of(cls, run_name: str, labels: tuple[str, ...], name: str = "", version: str = "",
           author: str = "", license: str = "") -> About:
        """What an export writes: ``name`` or the run folder's name, a description naming
        the classes, and the rest as given.

        >>> About.of("pets", ("cat", "dog")).description
        'Image classifier (2 classes: cat, dog), fine-tuned with edge-transfer.'
        """
        shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
        return cls(name or run_name,
                   f"Image classifier ({len(labels)} classes: {shown}), fine-tuned with "
                   "edge-transfer.", version, author, license)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> About:
        return cls(**{k: str(data[k]) for k in ("name", "description", "version", "author",
                                                 "license") if k in data})


@dataclass(frozen=True)
class ModelMetadata:
    """Labels, and the preprocessing a client applies before the file's input
    (``preprocessing``). ``in_graph`` is the preprocessing the graph applies itself (the
    Keras model's own, see :meth:`pixels_in`); None for a file whose input is the Keras
    model's input (files exported before in-graph normalization, int8-mixed files).

    >>> meta = ModelMetadata(("a", "b"), Preprocessing(8, 8, std=(255.0,))).pixels_in()
    >>> meta.preprocessing.channels, meta.preprocessing.std, meta.in_graph.std
    (3, (1.0,), (255.0,))
    """

    labels: tuple[str, ...]
    preprocessing: Preprocessing
    schema_version: int = SCHEMA_VERSION
    in_graph: Preprocessing | None = None
    about: About = About()
    keep_float: tuple[str, ...] = ()   # an int8-mixed file's layers kept in float

    def pixels_in(self) -> ModelMetadata:
        """The metadata of the same model wrapped by
        :func:`edge_transfer.train.models.pixel_adapter`: RGB pixels in, ``preprocessing`` applied
        inside the graph."""
        inner = self.in_graph or self.preprocessing
        return replace(self, preprocessing=inner.pixels_in(), in_graph=inner)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "schema_version": self.schema_version,
            "labels": list(self.labels),
            "preprocessing": self.preprocessing.to_dict(),
        }
        if self.in_graph is not None:
            data["in_graph"] = self.in_graph.to_dict()
        if self.about != About():
            data["about"] = self.about.to_dict()
        if self.keep_float:
            data["keep_float"] = list(self.keep_float)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        try:
            data: dict[str, Any] = json.loads(text)
            version = int(data["schema_version"])
            labels = tuple(str(label) for label in data["labels"])
            preprocessing = Preprocessing.from_dict(data["preprocessing"])
            inside = data.get("in_graph")
            in_graph = None if inside is None else Preprocessing.from_dict(inside)
            about = About.from_dict(data.get("about") or {})
            keep_float = tuple(str(name) for name in data.get("keep_float") or ())
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"malformed {METADATA_KEY} metadata in model file: {exc}") from exc
        if version > SCHEMA_VERSION:
            raise ModelError(
                f"model metadata schema {version} is newer than this edge-transfer understands "
                f"({SCHEMA_VERSION}); upgrade edge-transfer on this device"
            )
        return cls(labels, preprocessing, version, in_graph, about, keep_float)


def embed_in_tflite(model: bytes, meta: ModelMetadata) -> bytes:
    """A copy of a .tflite flatbuffer with ``meta`` as its ``edge_transfer`` metadata and,
    when it takes RGB images, the standard TFLite metadata
    (:mod:`edge_transfer.runtime.tflite_metadata`: normalization, labels file) that MediaPipe
    Tasks and the TFLite Support library read."""
    from ai_edge_litert.tools import flatbuffer_utils

    from edge_transfer.runtime import tflite_metadata as standard

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    _set_entry(obj, METADATA_KEY, meta.to_json().encode())
    _set_entry(obj, WEIGHTS_KEY, _weights_digest(
        [t.buffer for g in obj.subgraphs or () for t in g.tensors or ()],
        lambda b: obj.buffers[b].data).encode())
    info = standard_info(meta)
    if info is not None:
        _set_entry(obj, standard.METADATA_NAME, standard.standard_metadata(info))
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(obj))
    if info is None:
        return data
    return standard.append_files(data, {info.labels_file: standard.labels_text(meta.labels)})


WEIGHTS_KEY = "edge_transfer_weights"   # sha256 of the tensors' constant buffers


def _weights_digest(buffers: list[int], data: Any) -> str:
    """sha256 over the constant data of the buffers ``buffers`` names (in that order);
    ``data(index)`` is a buffer's bytes as a numpy array, or None when it has none."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for index in buffers:
        payload = data(index) if index > 0 else None
        if payload is not None and not isinstance(payload, int):
            digest.update(np.asarray(payload, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def check_tflite_weights(data: bytes) -> None:
    """Raise :class:`ModelError` when the weights of a .tflite are not those it was exported
    with (a copy damaged where LiteRT does not look: inside the weights). Files without the
    digest (exported before it) pass."""
    from ai_edge_litert import schema_py_generated as schema

    expected = tflite_entry(data, WEIGHTS_KEY)
    if expected is None:
        return
    model = schema.Model.GetRootAs(data, 0)
    buffers = [model.Subgraphs(g).Tensors(t).Buffer() for g in range(model.SubgraphsLength())
               for t in range(model.Subgraphs(g).TensorsLength())]
    found = _weights_digest(buffers, lambda b: model.Buffers(b).DataAsNumpy())
    if found.encode() != expected:
        raise ModelError("the model's weights differ from those it was exported with (sha256): "
                         "the file is damaged, copy it or export it again")


def standard_info(meta: ModelMetadata) -> Any:
    """The :class:`~edge_transfer.runtime.tflite_metadata.StandardInfo` of a file's metadata; None
    when its input is not an RGB image (one channel, BGR order: the standard metadata has no
    way to say so, and MediaPipe refuses such inputs)."""
    from edge_transfer.runtime import tflite_metadata as standard

    pre = meta.preprocessing
    if pre.channels != 3 or pre.channel_order != "rgb":
        return None
    about = meta.about
    return standard.describe(meta.labels, mean=pre.mean, std=pre.std,
                             name=about.name or "image classifier",
                             description=about.description, version=about.version,
                             author=about.author, license=about.license)


def _set_entry(obj: Any, name: str, payload: bytes) -> None:
    """Point ``obj``'s (a LiteRT ``ModelT``) metadata entry ``name`` at a new buffer holding
    ``payload``, replacing an entry of that name."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    obj.buffers.append(buffer)
    entries = [m for m in (obj.metadata or []) if m.name != name.encode()]
    entries.append(schema.MetadataT(name=name, buffer=len(obj.buffers) - 1))
    obj.metadata = entries


def tflite_entry(data: bytes, name: str) -> bytes | None:
    """The buffer of a .tflite's ``Metadata`` entry ``name`` (None when it has none).

    Reads LiteRT's flatbuffer schema, no TensorFlow.
    """
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(data, 0)
        for k in range(model.MetadataLength()):
            entry = model.Metadata(k)
            if entry.Name() == name.encode():
                return bytes(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    except Exception as exc:  # a damaged flatbuffer raises anything from struct to IndexError
        interrupts.check(exc)
        raise ModelError(f"cannot read .tflite metadata, the file looks damaged: {exc}") from exc
    return None


def read_from_tflite(data: bytes) -> ModelMetadata:
    payload = tflite_entry(data, METADATA_KEY)
    if payload is not None:
        return ModelMetadata.from_json(payload)
    raise ModelError(
        f"this .tflite has no {METADATA_KEY} metadata (labels, preprocessing); "
        "export it with `edge-transfer export`"
    )



def read_from_onnx_map(custom_metadata: dict[str, str]) -> ModelMetadata:
    """From ``InferenceSession.get_modelmeta().custom_metadata_map``."""
    if METADATA_KEY not in custom_metadata:
        raise ModelError(
            f"this .onnx has no {METADATA_KEY} metadata (labels, preprocessing); "
            "export it with `edge-transfer export`"
        )
    return ModelMetadata.from_json(custom_metadata[METADATA_KEY])


def embedded_metadata(backend: Any, model: Path | bytes) -> ModelMetadata | None:
    """The ``edge_transfer`` metadata of a model file (its path or bytes) already opened as
    ``backend`` (:func:`edge_transfer.runtime.backends.open_backend`); None when it has
    none (e.g. an intermediate graph)."""
    if getattr(backend, "runtime", None) == "onnxruntime":
        found = backend.metadata()
        return ModelMetadata.from_json(found[METADATA_KEY]) if METADATA_KEY in found else None
    data = model if isinstance(model, bytes) else _read_bytes(Path(model))
    payload = tflite_entry(data, METADATA_KEY)
    return None if payload is None else ModelMetadata.from_json(payload)


def read_metadata(path: Path) -> ModelMetadata:
    """Labels and preprocessing from a .tflite or .onnx file, without TensorFlow."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return read_from_tflite(_read_bytes(path))
    if suffix == ".onnx":
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            interrupts.check(exc)
            raise ModelError(f"{path} is not a loadable ONNX model: {exc}") from exc
        return read_from_onnx_map(session.get_modelmeta().custom_metadata_map)
    raise ModelError(f"{path}: unknown model type {suffix!r}; expected .tflite or .onnx")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc

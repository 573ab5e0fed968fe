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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_transfer import interrupts
from edge_transfer.errors import ModelError
from edge_transfer.preprocessing import Preprocessing

METADATA_KEY = "edge_transfer"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelMetadata:
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema_version": self.schema_version,
                "labels": list(self.labels),
                "preprocessing": self.preprocessing.to_dict(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        try:
            data: dict[str, Any] = json.loads(text)
            version = int(data["schema_version"])
            labels = tuple(str(label) for label in data["labels"])
            preprocessing = Preprocessing.from_dict(data["preprocessing"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"malformed {METADATA_KEY} metadata in model file: {exc}") from exc
        if version > SCHEMA_VERSION:
            raise ModelError(
                f"model metadata schema {version} is newer than this edge-transfer understands "
                f"({SCHEMA_VERSION}); upgrade edge-transfer on this device"
            )
        return cls(labels, preprocessing, version)


def embed_in_tflite(model: bytes, meta: ModelMetadata) -> bytes:
    """A copy of a .tflite flatbuffer with ``meta`` as its ``edge_transfer`` metadata."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(meta.to_json().encode(), dtype=np.uint8)
    obj.buffers.append(buffer)
    entries = [m for m in (obj.metadata or []) if m.name != METADATA_KEY.encode()]
    entries.append(schema.MetadataT(name=METADATA_KEY, buffer=len(obj.buffers) - 1))
    obj.metadata = entries
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def read_from_tflite(data: bytes) -> ModelMetadata:
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(data, 0)
        for k in range(model.MetadataLength()):
            entry = model.Metadata(k)
            if entry.Name() == METADATA_KEY.encode():
                payload = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
                return ModelMetadata.from_json(payload)
    except ModelError:
        raise
    except Exception as exc:  # a damaged flatbuffer raises anything from struct to IndexError
        interrupts.check(exc)
        raise ModelError(f"cannot read .tflite metadata, the file looks damaged: {exc}") from exc
    raise ModelError(
        f"this .tflite has no {METADATA_KEY} metadata (labels, preprocessing); "
        "export it with `edge-transfer export`"
    )


def embed_in_onnx(model: Any, meta: ModelMetadata) -> None:
    """Set ``metadata_props["edge_transfer"]`` on an ``onnx.ModelProto`` in place."""
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()


def read_from_onnx_map(custom_metadata: dict[str, str]) -> ModelMetadata:
    """From ``InferenceSession.get_modelmeta().custom_metadata_map``."""
    if METADATA_KEY not in custom_metadata:
        raise ModelError(
            f"this .onnx has no {METADATA_KEY} metadata (labels, preprocessing); "
            "export it with `edge-transfer export`"
        )
    return ModelMetadata.from_json(custom_metadata[METADATA_KEY])


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

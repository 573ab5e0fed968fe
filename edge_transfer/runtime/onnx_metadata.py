"""ONNX metadata in the conventions other clients read, beside the ``edge_transfer`` entry.

- OpenVINO's Model API (``openvino-model-api``; ``Model.create_model(path)``) reads
  ``metadata_props`` keys ``model_info <name>``: ``model_type`` (``Classification``),
  ``labels`` (split on white space: a space inside a label becomes ``_`` there; the
  ``edge_transfer`` entry keeps the labels exactly), ``mean_values`` and ``scale_values``
  (``(pixel - mean) / scale``), ``reverse_input_channels`` (``True`` flips its RGB input to
  BGR), ``resize_type``.
- ONNX's image metadata (``docs/MetadataProps.md``): ``Image.BitmapPixelFormat``,
  ``Image.ColorSpaceGamma``, ``Image.NominalPixelRange``, the input's ``IMAGE`` type
  denotation and NHWC dimension denotations (documentation for tools such as Netron and
  Windows ML).

>>> from edge_transfer.runtime.metadata import ModelMetadata
>>> from edge_transfer.core.preprocessing import Preprocessing
>>> meta = ModelMetadata(("tabby cat", "dog"), Preprocessing(8, 8, channels=1)).pixels_in()
>>> props = properties(meta)
>>> props["model_info labels"], props["model_info mean_values"], props["Image.BitmapPixelFormat"]
('tabby_cat dog', '0 0 0', 'Rgb8')
"""

from __future__ import annotations

from typing import Any

from edge_transfer.runtime.metadata import METADATA_KEY, ModelMetadata

MODEL_INFO = "model_info"
# NHWC image input, as ONNX's dimension denotations name the axes
IMAGE_DIMENSIONS = ("DATA_BATCH", "DATA_FEATURE", "DATA_FEATURE", "DATA_CHANNEL")


def properties(meta: ModelMetadata) -> dict[str, str]:
    """The ``metadata_props`` (key -> value) other clients read, for a file with ``meta``."""
    pre = meta.preprocessing
    channels = pre.channels
    mean = [pre.mean[0]] * channels if len(pre.mean) == 1 else list(pre.mean)
    std = [pre.std[0]] * channels if len(pre.std) == 1 else list(pre.std)
    pixel_format = ("Gray8" if channels == 1
                    else "Bgr8" if pre.channel_order == "bgr" else "Rgb8")
    props = {
        f"{MODEL_INFO} model_type": "Classification",
        f"{MODEL_INFO} labels": " ".join("_".join(label.split()) or "_"
                                         for label in meta.labels),
        f"{MODEL_INFO} mean_values": " ".join(_number(v) for v in mean),
        f"{MODEL_INFO} scale_values": " ".join(_number(v) for v in std),
        f"{MODEL_INFO} reverse_input_channels": str(pre.channel_order == "bgr"),
        f"{MODEL_INFO} resize_type": "standard",
        "Image.BitmapPixelFormat": pixel_format,
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": "NominalRange_0_255",
    }
    about = meta.about
    for key in ("name", "version", "author", "license"):
        if getattr(about, key):
            props[key] = getattr(about, key)
    return props


def annotate(model: Any, meta: ModelMetadata) -> None:
    """Write our ``edge_transfer`` entry and :func:`properties` into an ``onnx.ModelProto``
    (replacing those keys), the description into its ``doc_string``, and the image
    denotations on its 4-D input."""
    props = {METADATA_KEY: meta.to_json(), **properties(meta)}
    for prop in list(model.metadata_props):
        if prop.key in props:
            model.metadata_props.remove(prop)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    if meta.about.description:
        model.doc_string = meta.about.description
    for value in model.graph.input[:1]:
        tensor = value.type.tensor_type
        if len(tensor.shape.dim) == len(IMAGE_DIMENSIONS):
            value.type.denotation = "IMAGE"
            for dim, denotation in zip(tensor.shape.dim, IMAGE_DIMENSIONS, strict=True):
                dim.denotation = denotation


def _number(value: float) -> str:
    """``0`` for 0.0, ``127.5`` for 127.5: what Model API's list parser reads back.

    >>> _number(0.0), _number(127.5)
    ('0', '127.5')
    """
    return str(int(value)) if float(value).is_integer() else repr(float(value))

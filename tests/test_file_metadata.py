"""Every exported file speaks the deploy clients' conventions: RGB pixels 0..255 in, the
normalization inside the graph, standard TFLite metadata (normalization, labels file) and
OpenVINO Model API / ONNX image keys, read by nothing but the file.

The clients' own tests skip with the install command when the client is missing here
(MediaPipe and OpenVINO pin their own numpy/OpenCV: CI installs them in a second venv).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import clients
import numpy as np
import pytest
from _export_shared import export_integer_io, export_post_training

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.export.pipeline import ExportResult
from edge_transfer.runtime import EdgeModel
from edge_transfer.runtime import tflite_metadata as standard
from edge_transfer.runtime.metadata import METADATA_KEY, read_metadata, tflite_entry
from edge_transfer.train.runs import Run

AGREEMENT = 0.99   # top-1 agreement a client must reach with edge-transfer's runtime


@pytest.fixture(scope="module")
def result(digits_run: Path) -> ExportResult:
    return export_post_training(digits_run)


def _files(result: ExportResult, suffix: str) -> list[Path]:
    return [a.path for a in result.artifacts if a.ok and a.path.suffix == suffix]


def _test_images(result: ExportResult) -> tuple[np.ndarray, np.ndarray]:
    """The test split as the clients get it: uint8 RGB at the model's size, and the
    edge-transfer runtime's top-1 on the raw images (what ``edge-transfer predict`` says)."""
    run = Run.open(result.run)
    test = run.splits.test
    raw = test.x.read()
    pre = run.preprocessing
    return clients.rgb(pre.to_pixels(raw), pre.height, pre.width), raw


def _agreement(result: ExportResult, client: str) -> list[tuple[str, float]]:
    """(file, top-1 agreement with edge-transfer's runtime) per file: the client's label
    against the label of our runtime's top-1."""
    images, raw = _test_images(result)
    rows = []
    for path in _files(result, clients.SUFFIXES[client][0]):
        ours = [result.labels[i] for i in EdgeModel.load(path).predict(raw).indices]
        got = clients.CLIENTS[client](path, images)
        rows.append((path.name, float(np.mean(clients.same_labels(got, ours)))))
    return rows


def test_every_tflite_carries_standard_metadata(result: ExportResult) -> None:
    """Read back with the schema's generated reader: RGB input, mean 0 / std 1 (the
    normalization is inside), the labels file zipped in, our own entry kept; < 2 KB."""
    for path in _files(result, ".tflite"):
        data = path.read_bytes()
        buffer = tflite_entry(data, standard.METADATA_NAME)
        assert buffer is not None, path.name
        found = standard.read_standard(buffer)
        assert (found.color_space, found.mean, found.std) == ("RGB", (0.0,), (1.0,))
        assert found.min_parser_version == standard.MIN_PARSER_VERSION
        assert found.name == Path(result.run).name and "5 classes" in found.description
        labels = standard.read_files(data)[found.labels_file].decode().splitlines()
        assert tuple(labels) == result.labels
        assert tflite_entry(data, METADATA_KEY) is not None   # ours stays
        overhead = len(buffer) + _zip_bytes(data)
        assert overhead < 2048 + len(standard.labels_text(result.labels)), overhead


def _zip_bytes(data: bytes) -> int:
    """Bytes of the appended zip, from its first local header (zipfile gives its position in
    the whole file) to the end."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return len(data) - min(info.header_offset for info in archive.infolist())


def test_every_file_takes_rgb_pixels_and_normalizes_inside(result: ExportResult) -> None:
    run = Run.open(result.run)
    for artifact in result.artifacts:
        meta = read_metadata(artifact.path)
        assert meta.preprocessing == run.preprocessing.pixels_in()   # 3 channels, 0 and 1
        assert meta.in_graph == run.preprocessing                     # gray, /255 inside
        assert artifact.inputs[0].shape[-1] == 3


def test_bare_litert_agrees_with_the_runtime(result: ExportResult) -> None:
    """Raw RGB pixels as float32, argmax, labels from the file's labels.txt."""
    for name, agreement in _agreement(result, "litert"):
        assert agreement >= AGREEMENT, (name, agreement)


def test_bare_onnxruntime_agrees_with_the_runtime(result: ExportResult) -> None:
    """Raw RGB pixels as float32, argmax, labels from ``model_info labels``."""
    for name, agreement in _agreement(result, "onnxruntime"):
        assert agreement >= AGREEMENT, (name, agreement)


def test_onnx_carries_model_api_and_image_metadata(result: ExportResult) -> None:
    import onnx

    for path in _files(result, ".onnx"):
        model = onnx.load(str(path))
        props = {p.key: p.value for p in model.metadata_props}
        assert props["model_info model_type"] == "Classification"
        assert props["model_info labels"].split() == list(result.labels)
        assert props["model_info mean_values"] == "0 0 0"
        assert props["model_info scale_values"] == "1 1 1"
        assert props["model_info reverse_input_channels"] == "False"
        assert props["Image.BitmapPixelFormat"] == "Rgb8"
        assert props["Image.NominalPixelRange"] == "NominalRange_0_255"
        assert METADATA_KEY in props
        value = model.graph.input[0]
        assert value.type.denotation == "IMAGE"
        assert [d.denotation for d in value.type.tensor_type.shape.dim] == [
            "DATA_BATCH", "DATA_FEATURE", "DATA_FEATURE", "DATA_CHANNEL"]


def test_uint8_file_takes_raw_pixels(digits_run: Path) -> None:
    """``--io uint8``: the input's quantization is the identity on pixels (scale 1, zero
    point 0), so a client feeds its uint8 image bytes as they are."""
    artifact = export_integer_io(digits_run, "uint8").get("tflite-int8")
    tensor = artifact.inputs[0]
    assert (tensor.dtype, tensor.scale, tensor.zero_point) == ("uint8", 1.0, 0)


def test_files_without_the_adapter_still_run(result: ExportResult, tmp_path: Path) -> None:
    """A file of the earlier convention (the Keras model's own input, normalization by the
    client) loads and predicts as before in the runtime, from its own metadata."""
    from edge_transfer.core.keras import load
    from edge_transfer.runtime.metadata import ModelMetadata
    from exporters import Calibration, ExportSpec, KerasSource
    from exporters import tflite as exporter

    load()
    run = Run.open(result.run)
    model = run.load_model()
    x, _ = run.split_arrays("train")
    artifact = exporter.export(KerasSource(model, tmp_path), ExportSpec.fp32(),
                               Calibration(x[:8], model.input_names[0]), tmp_path,
                               metadata=ModelMetadata(run.labels, run.preprocessing))
    old = EdgeModel.load(artifact.path)
    assert old.preprocessing == run.preprocessing and old.backend.input.shape[-1] == 1
    _, raw = _test_images(result)
    new = EdgeModel.load(result.get("tflite-fp32").path)
    assert new.preprocessing.channels == 3
    np.testing.assert_allclose(old.predict(raw).probabilities, new.predict(raw).probabilities,
                               atol=1e-4)



@pytest.mark.parametrize("pre", [
    Preprocessing(6, 6, 1, mean=(0.0,), std=(255.0,)),
    Preprocessing(6, 6, 3, mean=(127.5,), std=(127.5,)),
    Preprocessing(6, 6, 3, mean=(10.0, 20.0, 30.0), std=(2.0, 3.0, 4.0), channel_order="bgr"),
])
def test_pixel_adapter_is_the_preprocessing(pre: Preprocessing) -> None:
    """On RGB pixels the adapted model computes what the model computes on the preprocessed
    image (luma, BGR order, per-channel mean and std inside), and keeps the layer names."""
    from edge_transfer.core.keras import load
    from edge_transfer.train.models import PIXEL_ADAPTER, pixel_adapter

    _, keras = load()
    inputs = keras.Input(pre.input_shape, name="image")
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(
        keras.layers.Flatten()(keras.layers.Conv2D(3, 3, name="conv")(inputs))), name="net")
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 3)).astype(np.uint8)
    adapted = pixel_adapter(model, pre)
    expected = model(pre.normalize(_channels(rgb, pre))).numpy()
    np.testing.assert_allclose(adapted(rgb.astype(np.float32)).numpy(), expected,
                               rtol=1e-4, atol=1e-4)
    assert adapted.input_names == ["image"] and adapted.name == "net"
    assert {layer.name for layer in adapted.layers} >= {PIXEL_ADAPTER, "conv", "head"}


def _channels(rgb: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """RGB -> the model's channels without rounding (the graph's luma is not rounded)."""
    if pre.channels == 1:
        return (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    return rgb

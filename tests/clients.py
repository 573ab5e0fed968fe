"""Deploy clients running an exported file with nothing but the file: each function is what
a user of that client writes (its own API, its own preprocessing read from the file), and
returns the top-1 class index and label name per image.

Images are uint8 RGB (N, H, W, 3) at the model's input size. No edge-transfer code runs
between the image and the label. Used by tests/test_file_metadata.py; also a script that
prints each client's agreement with edge-transfer's runtime on a bundle's validation sample
(run it with a Python that has the clients, e.g. a separate virtualenv, and this repository
on PYTHONPATH: the runtime needs no TensorFlow)::

    python tests/clients.py BUNDLE [mediapipe,openvino,litert,onnxruntime]
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

Top1 = tuple[list[int], list[str]]


def litert(path: Path, images: np.ndarray) -> Top1:
    """A bare LiteRT interpreter: raw RGB pixels as float32 (quantized by the input tensor's
    own scale and zero point for an integer input), argmax, labels from the file's
    ``labels.txt`` (the associated file the standard metadata names, zipped in the file)."""
    from ai_edge_litert.interpreter import Interpreter

    data = Path(path).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        labels = archive.read("labels.txt").decode().splitlines()
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    indices = []
    for image in images:
        x = image[None].astype(np.float32)
        scale, zero = inp["quantization"]
        if inp["dtype"] != np.float32:
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.rint(x / scale + zero), info.min, info.max)
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        indices.append(int(np.argmax(interpreter.get_tensor(out["index"])[0])))
    return indices, [labels[i] for i in indices]


def onnxruntime(path: Path, images: np.ndarray) -> Top1:
    """A bare ONNX Runtime session: raw RGB pixels as float32, argmax, labels from the
    ``model_info labels`` metadata."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels = session.get_modelmeta().custom_metadata_map["model_info labels"].split()
    name = session.get_inputs()[0].name
    probabilities = session.run(None, {name: images.astype(np.float32)})[0]
    indices = [int(i) for i in probabilities.argmax(axis=1)]
    return indices, [labels[i] for i in indices]


def mediapipe(path: Path, images: np.ndarray) -> Top1:
    """MediaPipe Tasks ``ImageClassifier`` given only the file's path."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision

    indices, names = [], []
    with vision.ImageClassifier.create_from_model_path(str(path)) as classifier:
        for image in images:
            frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            best = classifier.classify(frame).classifications[0].categories[0]
            indices.append(int(best.index))
            names.append(str(best.category_name))
    return indices, names


def openvino(path: Path, images: np.ndarray) -> Top1:
    """OpenVINO's Model API given only the file's path (``Model.create_model``)."""
    from model_api.models import Model

    model = Model.create_model(str(path), device="CPU")
    indices, names = [], []
    for image in images:
        best = model(np.ascontiguousarray(image)).top_labels[0]
        indices.append(int(best.id))
        names.append(str(best.name))
    return indices, names


CLIENTS = {"mediapipe": mediapipe, "openvino": openvino, "litert": litert,
           "onnxruntime": onnxruntime}
SUFFIXES = {"mediapipe": (".tflite",), "openvino": (".onnx",), "litert": (".tflite",),
            "onnxruntime": (".onnx",)}


def rgb(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (N, H, W[, C]) at the model's size -> uint8 RGB (N, H, W, 3) (gray repeated)."""
    x = np.asarray(images, np.uint8)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:3] != (height, width):
        raise ValueError(f"images are {x.shape[1:3]}, the model takes {(height, width)}")
    return np.repeat(x, 3, axis=3) if x.shape[3] == 1 else x[..., :3]


def main(argv: list[str]) -> int:
    from edge_transfer.runtime import EdgeModel

    bundle = Path(argv[0])
    names = argv[1].split(",") if len(argv) > 1 else list(CLIENTS)
    with np.load(bundle / "validation.npz", allow_pickle=False) as data:
        x = data["x"]
    for path in sorted([*bundle.glob("*.tflite"), *bundle.glob("*.onnx")]):
        ours = EdgeModel.load(path)
        pre = ours.preprocessing
        expected = ours.predict(x).indices
        images = rgb(pre.to_pixels(x), pre.height, pre.width)
        for name in names:
            if path.suffix not in SUFFIXES[name]:
                continue
            try:
                got, labels = CLIENTS[name](path, images)
            except Exception as exc:  # a client that refuses the file: its reason
                print(f"{path.name:32s} {name:12s} refused: {str(exc).splitlines()[0][:150]}")
                continue
            agree = int(np.sum(np.asarray(got) == expected))
            right_names = all(label.replace("_", " ") == ours.labels[i].replace("_", " ")
                              for i, label in zip(got, labels, strict=True))
            print(f"{path.name:32s} {name:12s} {agree}/{len(expected)} "
                  f"({agree / len(expected):.4f}) labels {'ok' if right_names else 'WRONG'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

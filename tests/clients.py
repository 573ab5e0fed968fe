"""Deploy clients running an exported file with nothing but the file, in this process: each
function is the client's script of ``devices/clients/scripts`` (``client_NAME.py``: its own
API, its own preprocessing read from the file, the code ``validate --client`` runs), and
returns the top-1 label name per image.

Images are uint8 RGB (N, H, W, 3) at the model's input size. No edge-transfer code runs
between the image and the label. Used by tests/test_file_metadata.py and test_diagnose.py;
also a script that prints each client's agreement with edge-transfer's runtime on a bundle's
validation sample (run it with a Python that has the clients, e.g. a separate virtualenv, and
this repository on PYTHONPATH: the runtime needs no TensorFlow)::

    python tests/clients.py BUNDLE [mediapipe,openvino,litert,onnxruntime]
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from devices.clients import SCRIPTS

Labels = list[str]


def _client(name: str) -> Callable[[Path, np.ndarray], Labels]:
    def classify(path: Path, images: np.ndarray) -> Labels:
        if str(SCRIPTS) not in sys.path:   # the scripts import their _protocol beside them
            sys.path.insert(0, str(SCRIPTS))
        module = importlib.import_module(f"client_{name}")
        labels, _version = module.classify(str(path), np.ascontiguousarray(images))
        return [str(label) for label in labels]

    classify.__name__ = name
    classify.__doc__ = f"``devices/clients/scripts/client_{name}.py`` on ``images``."
    return classify


litert = _client("litert")
onnxruntime = _client("onnxruntime")
mediapipe = _client("mediapipe")
openvino = _client("openvino")

CLIENTS = {"mediapipe": mediapipe, "openvino": openvino, "litert": litert,
           "onnxruntime": onnxruntime}
SUFFIXES = {"mediapipe": (".tflite",), "openvino": (".onnx",), "litert": (".tflite",),
            "onnxruntime": (".onnx",)}


def same_labels(got: Sequence[str], ours: Sequence[str]) -> np.ndarray:
    """Per image, whether a client's label is ours (a space inside a label is written ``_``
    in ONNX ``model_info labels``, which Model API splits on whitespace).

    >>> same_labels(["tabby_cat", "dog"], ["tabby cat", "cat"]).tolist()
    [True, False]
    """
    return np.array([a.replace("_", " ") == b.replace("_", " ")
                     for a, b in zip(got, ours, strict=True)])


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
        expected = [ours.labels[i] for i in ours.predict(x).indices]
        images = rgb(pre.to_pixels(x), pre.height, pre.width)
        for name in names:
            if path.suffix not in SUFFIXES[name]:
                continue
            try:
                got = CLIENTS[name](path, images)
            except Exception as exc:  # a client that refuses the file: its reason
                print(f"{path.name:32s} {name:12s} refused: {str(exc).splitlines()[0][:150]}")
                continue
            agree = int(same_labels(got, expected).sum())
            print(f"{path.name:32s} {name:12s} {agree}/{len(expected)} "
                  f"({agree / len(expected):.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Deploy clients: the apps' own runtimes, run on a bundle's files by ``validate --client``.

One table, :data:`CLIENTS` (a new client is one row here and one script in ``scripts/``).
Each client runs as a subprocess of its own Python (:func:`clients_python`) with a small
script of the client's own API (``scripts/client_NAME.py``, numpy and the client only): the
image goes in as RGB pixels, the label comes out, and nothing of edge-transfer is in
between. Its top-1 is compared with our runtime's on the same images (:mod:`.compare`).

>>> sorted(CLIENTS)
['litert', 'mediapipe', 'onnxruntime', 'openvino']
>>> parse_clients(["mediapipe,litert", "litert"])
('mediapipe', 'litert')
>>> CLIENTS["openvino"].formats
('onnx',)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_transfer.core.errors import DeviceError

PYTHON_ENV = "EDGE_TRANSFER_CLIENTS_PYTHON"
SCRIPTS = Path(__file__).resolve().parent / "scripts"
CLIENTS_VENV = ".venv-clients"   # a source checkout's second venv (see .ci/run)


@dataclass(frozen=True)
class Client:
    """A deploy client: what it reads, how it runs a file, how to install it."""

    name: str
    formats: tuple[str, ...]
    api: str        # what runs the file, in the client's words
    install: str    # the pip command that installs it

    @property
    def script(self) -> Path:
        return SCRIPTS / f"client_{self.name}.py"


CLIENTS: dict[str, Client] = {c.name: c for c in (
    Client("mediapipe", ("tflite",), "MediaPipe Tasks ImageClassifier",
           "pip install mediapipe"),
    Client("litert", ("tflite",), "LiteRT Interpreter, labels from the TFLite metadata",
           "pip install ai-edge-litert"),
    Client("onnxruntime", ("onnx",), "ONNX Runtime session, labels from metadata_props",
           "pip install onnxruntime"),
    Client("openvino", ("onnx",), "OpenVINO Model API Model.create_model",
           "pip install openvino 'openvino-model-api[onnx]'"),
)}


def parse_clients(values: Sequence[str]) -> tuple[str, ...]:
    """Client names from repeated and comma-separated ``--client`` values (``all``: every
    client), in order, once each; an unknown name is a DeviceError naming the known ones."""
    names: list[str] = []
    for value in values:
        for name in (n.strip() for n in value.split(",")):
            if name == "all":
                names += list(CLIENTS)
            elif name not in CLIENTS:
                raise DeviceError(f"unknown client {name!r}; choose from "
                                  f"{', '.join(CLIENTS)} or all")
            else:
                names.append(name)
    return tuple(dict.fromkeys(names))


def clients_python() -> str:
    """The Python the clients run in: ``$EDGE_TRANSFER_CLIENTS_PYTHON``, else a source
    checkout's ``.venv-clients/bin/python`` (what ``.ci/run`` installs), else this one."""
    given = os.environ.get(PYTHON_ENV)
    if given:
        return given
    checkout = SCRIPTS.parents[2] / CLIENTS_VENV / "bin" / "python"
    return str(checkout) if checkout.exists() else sys.executable


__all__ = ["CLIENTS", "PYTHON_ENV", "Client", "clients_python", "parse_clients"]

"""Where Fashion-MNIST's IDX files are found, in this order:

1. ``$EDGE_TRANSFER_DATA/fashion-mnist``;
2. the folder Debian's ``dataset-fashion-mnist`` package installs
   (``/usr/share/datasets/fashion-mnist``; ``dpkg -L dataset-fashion-mnist`` lists it);
3. Keras' dataset cache (``$KERAS_HOME`` or ``~/.keras``, ``datasets/fashion-mnist``);
4. Keras' own download (``keras.datasets.fashion_mnist``), which needs the network.

(A folder of IDX files given as ``--data PATH`` is read directly: see
:mod:`edge_transfer.data.idx`.)
The class names are the dataset's own (its README's label table).

>>> CLASS_NAMES[5], CLASS_NAMES[9]
('Sandal', 'Ankle boot')
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_transfer.core.errors import DataError

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = ("apt-get install dataset-fashion-mnist, or put the four IDX files in "
                "$EDGE_TRANSFER_DATA/fashion-mnist")


def candidates() -> list[Path]:
    """The folders searched, in order (the download comes after them)."""
    found = []
    if os.environ.get("EDGE_TRANSFER_DATA"):
        found.append(Path(os.environ["EDGE_TRANSFER_DATA"]) / "fashion-mnist")
    found.append(DEBIAN_FOLDER)
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    found.append(keras_home / "datasets" / "fashion-mnist")
    return found


def locate() -> Path:
    """The first folder holding Fashion-MNIST's IDX files; else Keras' download."""
    from edge_transfer.data import idx

    for folder in candidates():
        if idx.is_idx_folder(folder):
            return folder
    return _download()


def _download() -> Path:
    from edge_transfer.core.keras import load

    _, keras = load()
    try:
        keras.datasets.fashion_mnist.load_data()
    except Exception as exc:
        raise DataError(f"Fashion-MNIST is not on this machine and Keras could not download "
                        f"it ({type(exc).__name__}); {INSTALL_HINT}") from exc
    return candidates()[-1]

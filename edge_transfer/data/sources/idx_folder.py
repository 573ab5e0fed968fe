"""``IDX-FOLDER``: MNIST-format IDX files (MNIST, KMNIST, EMNIST; t10k is the test split)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge_transfer.data.sources import Request, Source

if TYPE_CHECKING:
    from edge_transfer.data.dataset import Dataset


def is_idx(folder: Path) -> bool:
    from edge_transfer.data import idx

    return idx.is_idx_folder(folder)


def load(request: Request) -> Dataset:
    from edge_transfer.data.dataset import load_idx_folder

    assert request.path is not None
    return load_idx_folder(request.path)


SOURCE = Source(syntax="IDX-FOLDER", folder=is_idx, order=10, load=load,
                help="a folder of MNIST-format IDX files (train-images-idx3-ubyte[.gz] ...)")

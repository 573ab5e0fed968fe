"""``fashion-mnist[:A-B]``: Fashion-MNIST (see :mod:`edge_transfer.data.fashion_mnist`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_transfer.data.sources import Request, Source

if TYPE_CHECKING:
    from edge_transfer.data.dataset import Dataset


def load(request: Request) -> Dataset:
    from edge_transfer.data.dataset import load_fashion_mnist

    return load_fashion_mnist(request.spec)


SOURCE = Source(
    syntax="fashion-mnist[:A-B]", prefix="fashion-mnist", load=load,
    help="Fashion-MNIST, classes by index (apt-get install dataset-fashion-mnist or "
         "$EDGE_TRANSFER_DATA/fashion-mnist)")

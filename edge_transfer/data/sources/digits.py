"""``digits[:A-B]``: scikit-learn's handwritten digits, shipped with the package."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_transfer.data.sources import Request, Source

if TYPE_CHECKING:
    from edge_transfer.data.dataset import Dataset


def load(request: Request) -> Dataset:
    from edge_transfer.data.dataset import load_digits

    return load_digits(request.spec)


SOURCE = Source(
    syntax="digits[:A-B]", prefix="digits", load=load,
    help="built-in handwritten digits (8x8 gray; e.g. digits:5-9 or digits:0,2,4)")

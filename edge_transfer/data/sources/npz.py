"""``FILE.npz``: arrays ``x``, ``y`` and optional ``class_names``, never unpickled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_transfer.data.sources import Request, Source

if TYPE_CHECKING:
    from edge_transfer.data.dataset import Dataset


def load(request: Request) -> Dataset:
    from edge_transfer.data.npz_file import load_npz

    assert request.path is not None
    return load_npz(request.path, request.whole)


SOURCE = Source(syntax="FILE.npz", suffix=".npz", load=load,
                help="arrays x (N, H, W[, C], pixels 0..255), y [, class_names]")

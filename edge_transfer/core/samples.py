"""Per-sample predictions, kept compact, with the identity of the samples they were made on.

Every accuracy this tool measures keeps the top-1 label it predicted for each sample, so
that two models measured on the same samples can be compared pair by pair
(:func:`edge_transfer.core.stats.paired`). Arrays of small non-negative integers (labels,
predictions, indices) travel in JSON as one short string: ``"<bytes per value>:<base64 of
the zlib-compressed little-endian values>"``. numpy and the standard library only.

>>> text = encode([5, 6, 7, 5])
>>> text[:2], decode(text).tolist()
('1:', [5, 6, 7, 5])
>>> len(encode(np.arange(5000) % 5)) < 100         # 5,000 predictions in < 100 characters
True
>>> decode(text).tolist()
[5, 6, 7, 5]
>>> from edge_transfer.core.records.paired import SampleIds  # which samples: data, split, positions
>>> ids = SampleIds.of("1025a9517fa0a376", "test", labels=[0, 1, 1])
>>> ids.count, decode(ids.indices).tolist(), ids.same_samples(ids)
(3, [0, 1, 2], True)
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Sequence

import numpy as np

_WIDTHS = {1: "<u1", 2: "<u2", 4: "<u4"}
MAX_DECODED = 1 << 28   # refuse to inflate a string into more than this many bytes


class SamplesError(ValueError):
    """A per-sample string that cannot be decoded (the file holding it is damaged)."""


def encode(values: Sequence[int] | np.ndarray) -> str:
    """Non-negative integers as ``"<width>:<base64(zlib(values))>"`` (see the module doc)."""
    array = np.asarray(values).ravel()
    if (array.size and not np.issubdtype(array.dtype, np.integer) and array.dtype != bool
            and not np.all(np.equal(np.mod(array, 1), 0))):
        raise ValueError("only integers can be encoded")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError("only non-negative integers can be encoded")
    top = int(array.max()) if array.size else 0
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4
    raw = array.astype(_WIDTHS[width]).tobytes()
    return f"{width}:" + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode(text: str) -> np.ndarray:
    """The int64 array of an :func:`encode` string; SamplesError if it is damaged.

    >>> decode("3:AAAA")
    Traceback (most recent call last):
    ...
    edge_transfer.core.samples.SamplesError: per-sample string '3:AAAA' is damaged: unknown width 3
    """
    head, _, body = str(text).partition(":")
    try:
        width = int(head)
        if width not in _WIDTHS:
            raise ValueError(f"unknown width {width}")
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(body, validate=True), MAX_DECODED)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("truncated or too large")
        if len(raw) % width:
            raise ValueError("length is not a multiple of the width")
    except (ValueError, binascii.Error, zlib.error) as exc:
        short = text if len(text) <= 40 else text[:37] + "..."
        raise SamplesError(f"per-sample string {short!r} is damaged: {exc}") from exc
    return np.frombuffer(raw, dtype=_WIDTHS[width]).astype(np.int64)


def decode_or_none(text: str | None) -> np.ndarray | None:
    """:func:`decode`, or None when ``text`` is missing or damaged (figures that only
    enrich a message do without it).

    >>> decode_or_none(encode([1, 2])).tolist(), decode_or_none("3:AAAA"), decode_or_none(None)
    ([1, 2], None, None)
    """
    if not text:
        return None
    try:
        return decode(text)
    except SamplesError:
        return None


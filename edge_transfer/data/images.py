"""A lazily read stack of uint8 images: indexed and sliced without decoding, read in batches.

:class:`Images` looks like an (N, H, W, C) uint8 array to the code that splits and selects
(``len``, ``shape``, ``images[index]`` with an index array, a mask or a slice gives another
lazy stack); pixels are only produced by :meth:`Images.read` (a few images),
:meth:`Images.batches` (all of them, a batch at a time) or ``np.asarray`` (all at once, for
small data). A *reader* maps base positions to pixels: an in-memory or memory-mapped array,
image files decoded on demand, or several readers one after the other.

>>> import numpy as np
>>> stack = Images.of(np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2))
>>> stack.shape, stack[[4, 1]].read().shape
((6, 2, 2, 1), (2, 2, 2, 1))
>>> [len(b) for b in stack[1:].batches(2)]
[2, 2, 1]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Reader = Callable[[np.ndarray], np.ndarray]  # base positions (k,) -> uint8 (k, H, W, C)


@dataclass(frozen=True, eq=False)
class Images:
    """Images ``positions`` of a reader, each ``image_shape`` (H, W, C) uint8."""

    reader: Reader
    positions: np.ndarray
    image_shape: tuple[int, int, int]
    in_memory: bool = False             # the reader is a plain array (reads cost nothing)

    @classmethod
    def of(cls, array: np.ndarray) -> Images:
        """A stack over an (N, H, W[, C]) uint8 array or memmap (gray gets C = 1)."""
        shape = array.shape[1:] if array.ndim == 4 else (*array.shape[1:3], 1)
        return cls(ArrayReader(array), np.arange(len(array)), (shape[0], shape[1], shape[2]),
                   in_memory=not isinstance(array, np.memmap))

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.image_shape)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.uint8)

    @property
    def nbytes(self) -> int:
        return int(len(self) * np.prod(self.image_shape))

    def __getitem__(self, key: Any) -> Any:
        """An int gives one image (H, W, C); a slice, index array or mask a lazy stack; a
        tuple indexes the pixels of the images its first part selects (numpy's meaning)."""
        if isinstance(key, (int, np.integer)):
            return self.read(np.asarray([key]))[0]
        if isinstance(key, tuple):
            first = self[key[0]]
            pixels = first if isinstance(first, np.ndarray) else first.read()
            return pixels[(slice(None), *key[1:])] if pixels.ndim == 4 else pixels[key[1:]]
        return Images(self.reader, self.positions[key], self.image_shape, self.in_memory)

    def read(self, index: np.ndarray | None = None) -> np.ndarray:
        """The pixels of ``index`` (all when None) as one uint8 (k, H, W, C) array."""
        positions = self.positions if index is None else self.positions[index]
        if len(positions) == 0:
            return np.zeros((0, *self.image_shape), np.uint8)
        return self.reader(np.asarray(positions))

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches():
            yield from batch

    def batches(self, size: int = 256) -> Iterator[np.ndarray]:
        """All images, ``size`` at a time, in order."""
        for start in range(0, len(self), size):
            yield self.read(np.arange(start, min(start + size, len(self))))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        pixels = self.read()
        return pixels if dtype is None else pixels.astype(dtype)

    def pixel_digest(self) -> hashlib._Hash:
        """sha256 over the pixels in order, read in slices (same as hashing one array)."""
        digest = hashlib.sha256()
        for batch in self.batches(4096):
            digest.update(np.ascontiguousarray(batch).tobytes())
        return digest


class ArrayReader:
    """Positions of an (N, H, W[, C]) array or memmap; gray arrays get a channel axis."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        order = np.argsort(positions, kind="stable")   # memmaps read forwards
        pixels = np.empty((len(positions), *self.array.shape[1:]), np.uint8)
        pixels[order] = self.array[positions[order]]
        return pixels if pixels.ndim == 4 else pixels[..., np.newaxis]


class ConcatReader:
    """Several readers one after the other: position p of reader k is ``offsets[k] + p``."""

    def __init__(self, parts: Sequence[Images]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        part = np.searchsorted(self.offsets, positions, side="right") - 1
        out = np.empty((len(positions), *self.parts[0].image_shape), np.uint8)
        for k in np.unique(part):
            where = part == k
            out[where] = self.parts[k].read(positions[where] - self.offsets[k])
        return out


def concat(parts: Sequence[Images]) -> Images:
    """One lazy stack of several of the same image shape."""
    shapes = {p.image_shape for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"image shapes differ: {sorted(shapes)}")
    total = sum(len(p) for p in parts)
    return Images(ConcatReader(parts), np.arange(total), parts[0].image_shape,
                  all(p.in_memory for p in parts))

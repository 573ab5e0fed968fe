"""Load a data spec: built-in digits and Fashion-MNIST, IDX files, ``.npz`` files and image folders,
all read lazily (memory-mapped arrays, image files decoded when a batch is read).

A data spec is a string, read by one of :mod:`edge_transfer.data.sources` (one module per kind):

- ``digits`` or ``digits:5-9`` or ``digits:0,2,4``: scikit-learn's handwritten digits
  (8x8 gray, shipped with the package); labels are renumbered 0..k-1 in the order given.
- ``fashion-mnist`` or ``fashion-mnist:5-9``: Fashion-MNIST (28x28 gray, 10 classes, its own
  class names; see :mod:`edge_transfer.data.fashion_mnist` for where the files are found); the
  official t10k images are the test split.
- ``path/to/folder`` holding MNIST-format IDX files (``train-images-idx3-ubyte[.gz]`` ...):
  MNIST, KMNIST, EMNIST and the like; t10k is the test split.
- ``path/to/file.npz``: arrays ``x`` (N, H, W[, C]) of 0..255 pixels, ``y`` (N,) integer
  labels, optional ``class_names``; read with ``allow_pickle=False``, ``x`` memory-mapped.
- ``path/to/folder``: one subfolder per class holding .jpg/.jpeg/.png/.bmp/.gif files (a
  GIF's first frame); or pre-split: ``train/``, ``val/`` (or ``validation/``) and ``test/``,
  each with one subfolder per class, used as given.

>>> ds = load_dataset("digits:5-9")
>>> ds.class_names, ds.x.shape[1:]
(('5', '6', '7', '8', '9'), (8, 8, 1))
>>> from edge_transfer.data.dataset import split_dataset
>>> splits = split_dataset(ds, seed=0, shots=10)
>>> len(splits.train), len(splits.train.class_names)
(50, 5)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_transfer.core.errors import DataError
from edge_transfer.data import sources
from edge_transfer.data.dataset import TEST, UNION, VAL, Dataset, _as_split, _join


def is_built_in(spec: str) -> bool:
    return sources.is_built_in(spec)


def load_dataset(
    spec: str,
    image_size: tuple[int, int] | None = None,
    skip_bad_files: bool = False,
    val_data: str | None = None,
    test_data: str | None = None,
) -> Dataset:
    """Load a dataset from a data spec; image files are resized to ``image_size`` (H, W).
    ``val_data`` / ``test_data``: specs whose images are the val / test split instead."""
    dataset = _load_one(spec, image_size, skip_bad_files)
    if val_data is None and test_data is None:
        return dataset
    size = image_size or dataset.x.image_shape[:2]
    overrides = {VAL: val_data, TEST: test_data}
    parts = [dataset.subset(_not_in(dataset, [k for k, v in overrides.items() if v]))]
    for split, other_spec in overrides.items():
        if other_spec:
            other = _load_one(other_spec, size, skip_bad_files, whole=False)
            parts.append(_as_split(other, dataset, split, other_spec))
    return _join(parts, spec)


def _not_in(dataset: Dataset, splits: list[int]) -> np.ndarray:
    if dataset.split_of is None:
        return np.arange(len(dataset))
    return np.flatnonzero(~np.isin(dataset.split_of, splits))


def _load_one(spec: str, image_size: tuple[int, int] | None, skip_bad_files: bool,
              whole: bool = True) -> Dataset:
    """One data spec, read by its source (:mod:`edge_transfer.data.sources`); ``whole=False``: a
    val/test split, which may hold a single class."""
    if UNION in spec and not Path(spec).exists():
        return load_union(spec, image_size, skip_bad_files)
    source = sources.find(spec)
    path = None if source.prefix is not None else Path(spec)
    return source.load(sources.Request(spec, path, image_size, skip_bad_files, whole))


def load_union(spec: str, image_size: tuple[int, int] | None = None,
               skip_bad_files: bool = False) -> Dataset:
    """``"A + B"``: the classes of A, then those of B (class names must differ).

    >>> load_union("digits:0-1 + digits:7-8").class_names
    ('0', '1', '7', '8')
    """
    parts = [_load_one(part.strip(), image_size, skip_bad_files) for part in spec.split(UNION)]
    names = tuple(name for part in parts for name in part.class_names)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{spec}: classes {repeated} are in more than one part; each part "
                        "must bring classes of its own")
    offsets = np.cumsum([0] + [p.num_classes for p in parts[:-1]])
    shifted = [replace(p, y=p.y + int(k), class_names=names)
               for p, k in zip(parts, offsets, strict=True)]
    joined = _join(shifted, spec)
    if all(p.split_of is None for p in parts):    # split as one unsplit dataset would be
        joined = replace(joined, split_of=None)
    return joined


def absolute_spec(spec: str) -> str:
    """A data spec that still names the same data from another working folder."""
    if UNION in spec and not Path(spec).exists():
        return UNION.join(absolute_spec(part.strip()) for part in spec.split(UNION))
    if is_built_in(spec):
        return spec
    return str(Path(spec).resolve())

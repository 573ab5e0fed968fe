"""tf.data input pipelines: from a (lazy) dataset, in-memory arrays, or image files.

All apply :meth:`Preprocessing.apply` (the one transform used everywhere), shuffle by seed,
batch and prefetch. :func:`from_dataset` is what training, evaluation and export read: a
small split is decoded once and cached in memory; a large one is streamed (shuffled
indices, batches read and decoded in a parallel map), optionally through a file cache of the
decoded images, so memory stays flat in the number of images.

Multi-worker: a training stream is sharded by index across the workers before anything is
read (``Dataset.shard(workers, index)``, auto-shard policy OFF), so each worker decodes only
its own images; evaluation streams use the DATA auto-shard policy (every worker reads the
indices, keeps its share of the batches).

>>> import numpy as np
>>> from edge_transfer.core.preprocessing import Preprocessing
>>> pre = Preprocessing(8, 8, 1)
>>> ds = from_arrays(np.zeros((10, 8, 8, 1), np.uint8), np.zeros(10, int), pre, Batching(4))
>>> [tuple(x.shape) for x, _ in ds]
[(4, 8, 8, 1), (4, 8, 8, 1), (2, 8, 8, 1)]
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.errors import DataError
from edge_transfer.core.keras import load
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.data.dataset import Dataset
from edge_transfer.data.image_files import read_image

MEMORY_CACHE_MB = 64            # splits whose preprocessed images fit are cached in memory
                                # ($EDGE_TRANSFER_MEMORY_CACHE_MB overrides; 0: always stream)
READ_BATCH = 64                 # images read and decoded per call of the parallel map
SHUFFLE_BUFFER = 4096           # after a file cache: shuffle buffer (images, not the split)


_DATA_ERROR = re.compile(r"\bDataError: (.*?)(?:\n|$)")


@dataclass(frozen=True)
class Batching:
    """How a split's images are served: ``size`` a batch, shuffled by ``seed`` when
    ``shuffle``, changed by the ``augment`` names (:func:`augmentation`), endless when
    ``repeat``.

    >>> Batching(64, shuffle=True, seed=3)
    Batching(size=64, shuffle=True, seed=3, augment=(), repeat=False)
    """

    size: int = 32
    shuffle: bool = False
    seed: int = 0
    augment: tuple[str, ...] = ()
    repeat: bool = False


@contextmanager
def reading() -> Iterator[None]:
    """Around whatever iterates a stream (``fit``, a prediction loop): an image that fails to
    decode inside the pipeline (a :class:`DataError` raised in the parallel map, which
    TensorFlow wraps in an ``OpError`` with a traceback) is raised again as that one
    ``DataError`` naming the file."""
    tf, _ = load()
    try:
        yield
    except tf.errors.OpError as exc:
        found = _DATA_ERROR.search(exc.message or "")
        if found is None:
            raise
        raise DataError(found.group(1)) from None


def cached_in_memory(dataset: Dataset, preprocessing: Preprocessing) -> bool:
    """Whether :func:`from_dataset` keeps this split's preprocessed images in memory."""
    per_image = int(np.prod(preprocessing.input_shape)) * 4
    budget = float(os.environ.get("EDGE_TRANSFER_MEMORY_CACHE_MB", MEMORY_CACHE_MB))
    return len(dataset) * per_image <= budget * (1 << 20)


def from_dataset(
    dataset: Dataset,
    preprocessing: Preprocessing,
    batching: Batching = Batching(),
    cache_file: Path | None = None,
    shard: tuple[int, int] | None = None,
) -> Any:
    """A split -> batched, prefetched (image, label) ``tf.data.Dataset``, endless when
    ``batching.repeat``. Small splits are cached in memory (the same batches as
    :func:`from_arrays`); large ones are streamed, through ``cache_file`` (decoded uint8
    images on disk) when given.
    ``shard=(workers, index)`` keeps this worker's share of the images (read only those)."""
    tf, _ = load()
    index, n = _indices(tf, len(dataset), shard)
    if cached_in_memory(dataset, preprocessing):
        ds = _read(tf, index, n, _fetch(tf, dataset, preprocessing)).cache()
        return _finish(ds, n, batching, sharded=shard)
    if cache_file is not None:
        ds = _through_file(tf, index, n, dataset, preprocessing, cache_file, batching)
    else:
        ds = _streamed(tf, index, n, _fetch(tf, dataset, preprocessing), batching)
    return _finish(ds, n, replace(batching, shuffle=False, repeat=False), batched=True,
                   sharded=shard)


def _indices(tf: Any, size: int, shard: tuple[int, int] | None) -> tuple[Any, int]:
    """The image indices this worker reads (its share under ``shard``) and how many."""
    index = tf.data.Dataset.range(size)
    if shard is not None and shard[0] > 1:
        return index.shard(*shard), len(range(shard[1], size, shard[0]))
    return index, size


def _fetch(tf: Any, dataset: Dataset, preprocessing: Preprocessing,
           raw: bool = False) -> Any:
    """A map from a batch of indices to (images, labels): the images read and decoded by
    numpy, preprocessed (float32) unless ``raw`` (uint8 as decoded)."""
    images = dataset.x
    labels = tf.constant(dataset.y.astype(np.int64))
    shape = images.image_shape if raw else preprocessing.input_shape

    def read(index: np.ndarray) -> np.ndarray:
        batch = images.read(index)
        return batch if raw else preprocessing.apply(batch)

    def fetch(index: Any) -> tuple[Any, Any]:
        x = tf.numpy_function(read, [index], tf.uint8 if raw else tf.float32, stateful=False)
        x.set_shape((None, *shape))
        return x, tf.gather(labels, index)

    return fetch


def _parallel(tf: Any) -> dict[str, Any]:
    return {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}


def _read(tf: Any, index: Any, n: int, fetch: Any) -> Any:
    """One (image, label) at a time, read ``READ_BATCH`` at a time by a parallel map."""
    ds = index.batch(READ_BATCH).map(fetch, **_parallel(tf)).unbatch()
    return ds.apply(tf.data.experimental.assert_cardinality(n))


def _through_file(tf: Any, index: Any, n: int, dataset: Dataset, preprocessing: Preprocessing,
                  cache_file: Path, batching: Batching) -> Any:
    """Batches of a large split whose decoded images are cached in ``cache_file`` (shuffled
    within ``SHUFFLE_BUFFER`` images), preprocessed after the cache."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    ds = _read(tf, index, n, _fetch(tf, dataset, preprocessing, raw=True))
    ds = _order(ds.cache(str(cache_file)), min(n, SHUFFLE_BUFFER), batching)

    def prepare(batch: np.ndarray) -> np.ndarray:
        return preprocessing.apply(batch)

    def preprocess(x: Any, y: Any) -> tuple[Any, Any]:
        out = tf.numpy_function(prepare, [x], tf.float32, stateful=False)
        out.set_shape((None, *preprocessing.input_shape))
        return out, y

    return ds.batch(batching.size).map(preprocess, **_parallel(tf))


def _streamed(tf: Any, index: Any, n: int, fetch: Any, batching: Batching) -> Any:
    """Batches of a large split read straight from its images: the indices shuffled (the
    whole split), batched, then each batch read by a parallel map."""
    return _order(index, n, batching).batch(batching.size).map(fetch, **_parallel(tf))


def _order(ds: Any, buffer: int, batching: Batching) -> Any:
    """``ds`` shuffled within ``buffer`` items when ``batching.shuffle``, endless when
    ``batching.repeat``."""
    if batching.shuffle:
        ds = ds.shuffle(buffer, seed=batching.seed, reshuffle_each_iteration=True)
    return ds.repeat() if batching.repeat else ds


def from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    preprocessing: Preprocessing,
    batching: Batching = Batching(),
) -> Any:
    """uint8 images (N, H, W, C) + labels -> a batched, cached, prefetched ``tf.data.Dataset``
    (endless when ``batching.repeat``)."""
    tf, _ = load()
    ds = tf.data.Dataset.from_tensor_slices((preprocessing.apply(x), y.astype(np.int64)))
    return _finish(ds.cache(), len(y), batching)


def from_files(
    paths: Sequence[Path],
    y: np.ndarray,
    preprocessing: Preprocessing,
    batching: Batching = Batching(),
) -> Any:
    """Image files streamed from disk (decoded and preprocessed in parallel, cached after the
    first epoch) -> the same batches as :func:`from_arrays` on the decoded images."""
    tf, _ = load()
    shape = preprocessing.input_shape
    size = (preprocessing.height, preprocessing.width)

    def decode(path: bytes) -> np.ndarray:
        image = read_image(Path(path.decode()), size)
        return preprocessing.apply(image[np.newaxis])[0]

    def tf_decode(path: Any, label: Any) -> tuple[Any, Any]:
        image = tf.numpy_function(decode, [path], tf.float32, stateful=False)
        image.set_shape(shape)
        return image, label

    ds = tf.data.Dataset.from_tensor_slices(([str(p) for p in paths], y.astype(np.int64)))
    ds = ds.map(tf_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _finish(ds.cache(), len(y), batching)


def _finish(ds: Any, n: int, batching: Batching, batched: bool = False,
            sharded: tuple[int, int] | None = None) -> Any:
    tf, _ = load()
    ds = _order(ds, n, batching)
    if not batched:
        ds = ds.batch(batching.size)
    if batching.augment:
        augmenter = augmentation(batching.augment, batching.seed)
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = (
        policy.OFF if sharded is not None else policy.DATA
    )
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


AUGMENTATIONS = ("shift", "flip")


def augmentation(names: Sequence[str], seed: int = 0) -> Any:
    """Random changes of training images, by name: ``shift`` (small shifts, zooms and
    rotations, fit for any image) and ``flip`` (left-right mirror: for photos and clothing,
    never for digits or text, which it changes).

    >>> augmentation(["flip"]).name  # doctest: +SKIP
    'augmentation'
    """
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; use {', '.join(AUGMENTATIONS)}")
    _, keras = load()
    layers = {
        "shift": lambda: [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
            keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomRotation(0.03, fill_mode="nearest", seed=seed + 2)],
        "flip": lambda: [keras.layers.RandomFlip("horizontal", seed=seed + 3)],
    }
    return keras.Sequential([layer for name in names for layer in layers[name]()],
                            name="augmentation")

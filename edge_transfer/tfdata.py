"""tf.data input pipelines: from in-memory arrays, or streamed from image files on disk.

Both apply :meth:`Preprocessing.apply` (the one transform used everywhere), cache the
preprocessed images after the first epoch, shuffle by seed, batch and prefetch.

>>> import numpy as np
>>> from edge_transfer.preprocessing import Preprocessing
>>> pre = Preprocessing(8, 8, 1)
>>> ds = from_arrays(np.zeros((10, 8, 8, 1), np.uint8), np.zeros(10, int), pre, batch_size=4)
>>> [tuple(x.shape) for x, _ in ds]
[(4, 8, 8, 1), (4, 8, 8, 1), (2, 8, 8, 1)]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer._keras import load
from edge_transfer.data import read_image
from edge_transfer.preprocessing import Preprocessing


def from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    preprocessing: Preprocessing,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    augment: bool = False,
    repeat: bool = False,
) -> Any:
    """uint8 images (N, H, W, C) + labels -> a batched, cached, prefetched ``tf.data.Dataset``
    (endless when ``repeat``)."""
    tf, _ = load()
    ds = tf.data.Dataset.from_tensor_slices((preprocessing.apply(x), y.astype(np.int64)))
    return _finish(ds.cache(), len(y), batch_size, shuffle, seed, augment, repeat)


def from_files(
    paths: Sequence[Path],
    y: np.ndarray,
    preprocessing: Preprocessing,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    augment: bool = False,
    repeat: bool = False,
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
    return _finish(ds.cache(), len(y), batch_size, shuffle, seed, augment, repeat)


def _finish(ds: Any, n: int, batch_size: int, shuffle: bool, seed: int, augment: bool,
            repeat: bool) -> Any:
    tf, _ = load()
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)
    if augment:
        augmenter = augmentation(seed)
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def augmentation(seed: int = 0) -> Any:
    """Small random shifts, zooms and rotations (no flips: they change digits and text)."""
    _, keras = load()
    return keras.Sequential([
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
        keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomRotation(0.03, fill_mode="nearest", seed=seed + 2),
    ], name="augmentation")

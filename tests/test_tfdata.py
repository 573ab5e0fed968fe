"""The tf.data pipelines: streamed from disk gives the same batches as in-memory arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.data.image_files import list_image_folder, load_image_folder


def test_disk_and_memory_pipelines_agree(tmp_path: Path) -> None:
    from edge_transfer.data.tfdata import Batching, from_arrays, from_files

    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(
                tmp_path / c / f"{i}.png")
    pre = Preprocessing(8, 8, 3, mean=(127.5,), std=(127.5,))
    paths, labels, _ = list_image_folder(tmp_path)
    memory = load_image_folder(tmp_path, (8, 8))
    disk = list(from_files(paths, labels, pre, Batching(4)).as_numpy_iterator())
    ram = list(from_arrays(memory.x, memory.y, pre, Batching(4)).as_numpy_iterator())
    assert [len(y) for _, y in disk] == [4, 4, 2]
    for (xd, yd), (xm, ym) in zip(disk, ram, strict=True):
        np.testing.assert_array_equal(yd, ym)
        np.testing.assert_allclose(xd, xm, atol=1e-6)
    shuffled = from_arrays(memory.x, memory.y, pre, Batching(10, shuffle=True, seed=3))
    first, second = (next(iter(shuffled))[1].numpy() for _ in range(2))
    assert sorted(first) == sorted(memory.y.tolist()) and not np.array_equal(first, second)


def test_flip_mirrors_some_training_images_and_changes_nothing_else() -> None:
    """``--flip``: each training image is either itself or its left-right mirror, and both
    occur; without augmentation the batches are the images as given."""
    from edge_transfer.data.tfdata import Batching, from_arrays

    image = np.zeros((6, 6, 1), np.uint8)
    image[:, 0] = 255                                   # a bright left edge only
    x, y = np.repeat(image[np.newaxis], 64, axis=0), np.zeros(64, np.int64)
    pre = Preprocessing(6, 6, 1, mean=(0.0,), std=(255.0,))
    plain, _ = next(iter(from_arrays(x, y, pre, Batching(64))))
    flipped, _ = next(iter(from_arrays(x, y, pre, Batching(64, augment=("flip",), seed=1))))
    mirrored = np.all(flipped.numpy() == pre.apply(image[np.newaxis, :, ::-1]), axis=(1, 2, 3))
    as_given = np.all(flipped.numpy() == pre.apply(image[np.newaxis]), axis=(1, 2, 3))
    assert np.all(plain.numpy() == pre.apply(image[np.newaxis]))
    assert np.all(mirrored | as_given) and 10 < mirrored.sum() < 54

"""IDX files (Fashion-MNIST and any MNIST-format pair): memory-mapped, checked, built in."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main

from edge_transfer.core.errors import DataError
from edge_transfer.data import idx
from edge_transfer.data.dataset import split_dataset
from edge_transfer.data.load import load_dataset

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not idx.is_idx_folder(FASHION),
    reason="Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist")


def _header(magic: int, *dims: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def write_idx(folder: Path, split: str, x: np.ndarray, y: np.ndarray, gz: bool = True) -> None:
    """An MNIST-format pair, as the datasets ship them."""
    folder.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    with opener(folder / f"{split}-images-idx3-ubyte{suffix}", "wb") as f:
        f.write(_header(idx.IMAGES_MAGIC, *x.shape) + x.astype(np.uint8).tobytes())
    with opener(folder / f"{split}-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(_header(idx.LABELS_MAGIC, len(y)) + y.astype(np.uint8).tobytes())


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGE_TRANSFER_CACHE", str(folder))
    return folder


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 6, 5), dtype=np.uint8), np.arange(n) % 3


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_is_memory_mapped_and_t10k_is_the_test_split(
        tmp_path: Path, cache: Path, gz: bool) -> None:
    x, y = _images(30)
    xt, yt = _images(9, seed=1)
    write_idx(tmp_path / "mnist", "train", x, y, gz)
    write_idx(tmp_path / "mnist", "t10k", xt, yt, gz)
    ds = load_dataset(str(tmp_path / "mnist"))
    assert ds.class_names == ("0", "1", "2") and ds.x.shape == (39, 6, 5, 1)
    splits = split_dataset(ds, seed=0)
    np.testing.assert_array_equal(splits.test.x.read()[..., 0], xt)
    np.testing.assert_array_equal(splits.test.y, yt)
    assert len(splits.train) + len(splits.val) == 30
    first = np.asarray(ds.x.reader.parts[0].reader.array)  # type: ignore[attr-defined]
    assert isinstance(ds.x.reader.parts[0].reader.array, np.memmap)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(first, x)
    assert (len(list(cache.glob("idx-*"))) == 2) is gz   # .gz decompressed once, into the cache
    assert ds.fingerprint() == load_dataset(str(tmp_path / "mnist")).fingerprint()


@pytest.mark.parametrize("damage, message", [
    ("counts", "holds 30 images but .* 29 labels"),
    ("truncated", "not a complete gzip file"),
    ("magic", "not an IDX image file"),
    ("short", "truncated or damaged"),
])
def test_bad_idx_files_are_one_error_and_leave_nothing(
        tmp_path: Path, cache: Path, damage: str, message: str) -> None:
    x, y = _images(30)
    folder = tmp_path / "bad"
    write_idx(folder, "train", x, y[:29] if damage == "counts" else y)
    images = folder / "train-images-idx3-ubyte.gz"
    raw = images.read_bytes()
    if damage == "truncated":
        images.write_bytes(raw[: len(raw) // 2])
    elif damage == "magic":
        images.write_bytes(gzip.compress(_header(0x0801, 30, 6, 5) + x.tobytes()))
    elif damage == "short":
        images.write_bytes(gzip.compress(_header(idx.IMAGES_MAGIC, 30, 6, 5) + x.tobytes()[:-7]))
    with pytest.raises(DataError, match=message):
        load_dataset(str(folder))
    assert not any(p.name.startswith(".") for p in cache.glob("*"))  # no half-written copy
    result = run_main("finetune", "--data", str(folder), "--out", str(tmp_path / "run"),
                     env={"EDGE_TRANSFER_CACHE": str(cache)})
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run").exists()


@needs_fashion
def test_fashion_mnist_built_in_with_its_class_names(cache: Path) -> None:
    ds = load_dataset("fashion-mnist:5-9")
    assert ds.class_names == ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert len(ds) == 35_000 and ds.x.shape[1:] == (28, 28, 1)
    splits = split_dataset(ds, seed=0, shots=10)
    assert len(splits.test) == 5_000        # the official t10k images of these classes
    assert np.bincount(splits.train.y).tolist() == [10] * 5
    assert len(splits.val) == 4_500         # 15 % of the official training images
    assert load_dataset("fashion-mnist:Bag,Sandal").class_names == ("Bag", "Sandal")


@needs_fashion
def test_fashion_mnist_found_under_edge_transfer_data(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_transfer.data import fashion_mnist

    x, y = _images(20)
    write_idx(tmp_path / "fashion-mnist", "train", x, y % 10)
    write_idx(tmp_path / "fashion-mnist", "t10k", x[:10], y[:10] % 10)
    monkeypatch.setenv("EDGE_TRANSFER_DATA", str(tmp_path))
    assert fashion_mnist.locate() == tmp_path / "fashion-mnist"
    monkeypatch.delenv("EDGE_TRANSFER_DATA")
    assert fashion_mnist.locate() == FASHION


def test_fashion_recipe_dry_run_lists_every_step(tmp_path: Path, capsys) -> None:
    from importlib.resources import files

    from edge_transfer.cli import main

    recipe = Path(str(files("edge_transfer").joinpath("configs/fashion.toml")))
    assert main(["run", str(recipe), "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for step in ("pretrain", "finetune", "export", "bundle", "validate", "report"):
        assert f"edge-transfer {step}" in out
    assert "--data fashion-mnist:5-9" in out and "--shots 10" in out

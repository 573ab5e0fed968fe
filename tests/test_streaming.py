"""Image folders streamed from disk: listed, split by index, decoded on demand; pre-split
folders; --val-data / --test-data; fingerprints from the stored bytes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main
from PIL import Image

from edge_transfer.core.errors import DataError
from edge_transfer.data.dataset import split_dataset
from edge_transfer.data.load import load_dataset


def make_folder(root: Path, classes: dict[str, int], size: int = 10, seed: int = 0,
                mode: str = "L") -> Path:
    """PNG images, one subfolder per class; class k is brighter than class k-1."""
    rng = np.random.default_rng(seed)
    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            base = 30 + 60 * k
            pixels = np.clip(rng.normal(base, 12, (size, size)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels, "L")
            (image.convert(mode) if mode != "L" else image).save(root / name / f"{i:04d}.png")
    return root


def test_folder_is_lazy_and_decodes_only_what_is_read(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_transfer.data import image_files as data

    folder = make_folder(tmp_path / "f", {"a": 12, "b": 12})
    decoded: list[Path] = []
    original = data.read_image
    monkeypatch.setattr(data, "read_image",
                        lambda path, size: decoded.append(path) or original(path, size))
    ds = load_dataset(str(folder), image_size=(8, 8))
    splits = split_dataset(ds, seed=0, shots=2)
    assert decoded == []                     # listing, splitting: nothing decoded
    pixels = splits.train.x.read()
    assert pixels.shape == (4, 8, 8, 1) and len(decoded) == 4


def test_fingerprint_follows_the_bytes_not_the_file_times(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "f", {"a": 4, "b": 4})
    before = load_dataset(str(folder)).fingerprint()
    os.utime(folder / "a" / "0000.png", (1, 1))
    assert load_dataset(str(folder)).fingerprint() == before
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "a" / "0000.png")
    assert load_dataset(str(folder)).fingerprint() != before


def test_presplit_folder_is_used_as_given_and_shots_cut_train_only(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_folder(root / "train", {"cat": 8, "dog": 8}, seed=1)
    make_folder(root / "validation", {"cat": 3, "dog": 3}, seed=2)
    make_folder(root / "test", {"cat": 5, "dog": 4}, seed=3)
    splits = split_dataset(load_dataset(str(root)), seed=0, shots=2)
    assert splits.train.class_names == ("cat", "dog")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 6, 9)
    assert np.bincount(splits.test.y).tolist() == [5, 4]
    expected = np.asarray(Image.open(root / "test" / "dog" / "0000.png"))
    np.testing.assert_array_equal(splits.test.x.read(np.array([5]))[0, ..., 0], expected)


def test_val_and_test_data_override_and_classes_must_match(tmp_path: Path) -> None:
    main = make_folder(tmp_path / "main", {"a": 10, "b": 10})
    test = make_folder(tmp_path / "test", {"b": 3}, mode="RGB", seed=5)
    splits = split_dataset(load_dataset(str(main), test_data=str(test)), seed=0)
    assert len(splits.test) == 3 and set(splits.test.y) == {1}
    assert len(splits.train) + len(splits.val) == 20
    stray = make_folder(tmp_path / "stray", {"a": 2, "zebra": 2})
    with pytest.raises(DataError, match=r"classes \['zebra'\] that the training data lacks"):
        load_dataset(str(main), val_data=str(stray))


@pytest.mark.parametrize("case, message", [
    ("classes", "that the training data lacks"),
    ("empty", "is empty"),
])
def test_bad_presplit_folders_are_one_error(tmp_path: Path, case: str, message: str) -> None:
    root = tmp_path / "data"
    make_folder(root / "train", {"a": 6, "b": 6})
    if case == "classes":
        make_folder(root / "test", {"a": 2, "c": 2})
    else:
        (root / "val").mkdir()
        make_folder(root / "test", {"a": 2, "b": 2})
    with pytest.raises(DataError, match=message):
        load_dataset(str(root))
    result = run_main("finetune", "--data", str(root), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and result.stderr.startswith("error:")
    assert message.split()[-1] in result.stderr and not (tmp_path / "run").exists()


def _png_with_broken_pixels(path: Path) -> Path:
    """A PNG whose chunks and CRCs are valid (Pillow's ``verify`` passes) but whose pixel
    data is not a zlib stream: it fails only when decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", 10, 10, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", b"not a zlib stream") + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("kind", ["jpeg", "bmp", "gif"])
def test_truncated_image_is_refused_before_training(tmp_path: Path, kind: str) -> None:
    """Pillow's verify() passes a cut JPEG, BMP or GIF; the folder check still names it, and
    --skip-bad-files leaves it out."""
    folder = make_folder(tmp_path / "f", {"a": 6, "b": 6})
    suffix = {"jpeg": ".jpg", "bmp": ".bmp", "gif": ".gif"}[kind]
    whole = folder / "a" / f"whole{suffix}"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40), np.uint8), "L").save(whole)
    cut = folder / "a" / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) * 2 // 3])
    with pytest.raises(DataError, match=rf"unreadable image\(s\): \S*cut{suffix}.*"
                                        "--skip-bad-files"):
        load_dataset(str(folder))
    kept = load_dataset(str(folder), skip_bad_files=True)
    assert len(kept) == 13 and kept.x.read().shape == (13, 10, 10, 1)   # whole one kept


def test_image_failing_mid_training_is_one_error_naming_it(tmp_path: Path) -> None:
    """A file that passes the folder check but cannot be decoded stops finetune with one
    `error:` line naming it (exit 2), not a TensorFlow traceback; no run is left behind."""
    folder = make_folder(tmp_path / "f", {"a": 8, "b": 8})
    _png_with_broken_pixels(folder / "b" / "broken.png")
    assert len(load_dataset(str(folder))) == 17                # passes the check
    result = run_main("finetune", "--data", str(folder), "--out", str(tmp_path / "run"),
                     "--epochs", "1", "--finetune-epochs", "0", "--quiet",
                     env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.png is not a usable image" in errors[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()

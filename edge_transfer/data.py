"""Datasets: the built-in digits task, ``.npz`` files and image folders (numpy + Pillow).

A data spec is a string:

- ``digits`` or ``digits:5-9`` or ``digits:0,2,4``: scikit-learn's handwritten digits
  (8x8 gray, shipped with the package); labels are renumbered 0..k-1 in the order given.
- ``path/to/file.npz``: arrays ``x`` (N, H, W[, C]) of 0..255 pixels, ``y`` (N,) integer
  labels, optional ``class_names``; read with ``allow_pickle=False``.
- ``path/to/folder``: one subfolder per class holding .jpg/.jpeg/.png/.bmp files.

>>> ds = load_dataset("digits:5-9")
>>> ds.class_names, ds.x.shape[1:]
(('5', '6', '7', '8', '9'), (8, 8, 1))
>>> splits = split_dataset(ds, seed=0, shots=10)
>>> len(splits.train), len(splits.train.class_names)
(50, 5)
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from edge_transfer.errors import DataError
from edge_transfer.preprocessing import as_uint8_batch, convert_channels, resize_batch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DIGITS_PREFIX = "digits"
MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs beyond this


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images as uint8 (N, H, W, C) pixels 0..255, integer labels, and class names."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray) -> Dataset:
        return replace(self, x=self.x[index], y=self.y[index])

    def fingerprint(self) -> str:
        """A short sha256 over pixels, labels and class names: same data, same fingerprint."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.x).tobytes())
        digest.update(np.ascontiguousarray(self.y.astype(np.int64)).tobytes())
        digest.update("\n".join(self.class_names).encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset

    def get(self, name: str) -> Dataset:
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)


def load_dataset(
    spec: str,
    image_size: tuple[int, int] | None = None,
    skip_bad_files: bool = False,
) -> Dataset:
    """Load a dataset from a data spec; folders are resized to ``image_size`` (H, W)."""
    if spec == DIGITS_PREFIX or spec.startswith(DIGITS_PREFIX + ":"):
        return load_digits(spec)
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"{spec} does not exist; give an image folder, an .npz file or digits[:A-B]"
        )
    if path.is_dir():
        return load_image_folder(path, image_size, skip_bad_files)
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    raise DataError(f"{spec} is neither a folder nor an .npz file; see --help for data specs")


def absolute_spec(spec: str) -> str:
    """A data spec that still names the same data from another working folder."""
    if spec == DIGITS_PREFIX or spec.startswith(DIGITS_PREFIX + ":"):
        return spec
    return str(Path(spec).resolve())


def parse_class_selection(text: str, known: Sequence[str]) -> list[str]:
    """``"5-9"`` / ``"0,2,4"`` / ``"0-2,7"`` -> class names, in the order given."""
    selected: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            low, _, high = part.partition("-")
            if not (low.isdigit() and high.isdigit()):
                raise DataError(f"bad class range {part!r}; write it like 5-9")
            if int(low) > int(high):
                raise DataError(f"{part} is a reversed range; write {high}-{low}")
            selected += [str(i) for i in range(int(low), int(high) + 1)]
        else:
            selected.append(part)
    unknown = [name for name in selected if name not in known]
    if unknown:
        raise DataError(f"unknown classes {unknown}; the classes are {', '.join(known)}")
    if len(set(selected)) != len(selected):
        raise DataError(f"classes repeated in {text!r}; name each class once")
    return selected


def load_digits(spec: str = DIGITS_PREFIX) -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 8x8 gray, optionally a class selection."""
    source = resources.files("edge_transfer").joinpath("datasets/digits.npz")
    with source.open("rb") as f, np.load(f, allow_pickle=False) as data:
        x, y = data["x"][..., np.newaxis], data["y"]
    all_names = [str(i) for i in range(10)]
    _, _, selection = spec.partition(":")
    names = parse_class_selection(selection, all_names) if selection else all_names
    return select_classes(Dataset(x, y, tuple(all_names)), names, f"digits:{selection}")


def select_classes(dataset: Dataset, names: Sequence[str], what: str) -> Dataset:
    """Keep the named classes, renumbered 0..k-1 in the order given."""
    if len(names) < 2:
        raise DataError(f"{what} selects {len(names)} class; a classifier needs at least 2")
    old_index = [dataset.class_names.index(n) for n in names]
    keep = np.isin(dataset.y, old_index)
    remap = np.full(max(dataset.num_classes, 1), -1, dtype=np.int64)
    remap[old_index] = np.arange(len(names))
    return Dataset(dataset.x[keep], remap[dataset.y[keep]], tuple(names))


def load_npz(path: Path) -> Dataset:
    """``x``, ``y`` and optional ``class_names`` from an .npz, never unpickling anything."""
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); save it again with numpy.savez(x=..., y=...)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"x", "y"} - set(data.files)
            if missing:
                raise DataError(f"{path} lacks arrays {sorted(missing)}; save it with x= and y=")
            x, y = data["x"], data["y"]
            names = data["class_names"] if "class_names" in data.files else None
    except ValueError as exc:  # object arrays need pickle, which we refuse
        raise DataError(f"{path} holds object arrays; save plain numeric arrays ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as .npz: {exc}; save it again with "
                        "numpy.savez(x=..., y=...)") from exc
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise DataError(f"{path}: y must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: labels must be >= 0, found {y.min()}")
    x = as_uint8_batch(x)
    count = int(y.max()) + 1 if len(y) else 0
    class_names = tuple(str(n) for n in names) if names is not None else tuple(
        str(i) for i in range(count)
    )
    if len(class_names) < count:
        raise DataError(f"{path}: labels go up to {count - 1} but only {len(class_names)} names")
    return checked(Dataset(x, y.astype(np.int64), class_names), str(path))


def list_image_folder(folder: Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """Image paths, labels and class names (sorted subfolder names) of an image folder."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder} has no class subfolders; put each class's images in its own")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (folder / name).iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise DataError(f"{folder} holds no {'/'.join(IMAGE_SUFFIXES)} images in its subfolders")
    return paths, np.asarray(labels, dtype=np.int64), tuple(classes)


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One image file as uint8 (H, W, C) at ``size`` (H, W), C = 1 for gray, else 3."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    if not path.is_file():
        raise DataError(f"image {path} does not exist; check the path")
    try:
        with Image.open(path) as image:
            refuse_huge(image.width, image.height)
            mode = "L" if image.mode in ("L", "I;16", "I", "1") else "RGB"
            pixels = np.asarray(image.convert(mode))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} is not a usable image: {exc}; give a .png, .jpg or .bmp "
                        "file, or remove it") from exc
    batch = as_uint8_batch(pixels[np.newaxis])
    if batch.shape[1:3] != size:
        batch = resize_batch(batch, *size)
    return batch[0]


def refuse_huge(width: int, height: int) -> None:
    """Refuse an image whose pixel count exceeds ``MAX_IMAGE_PIXELS`` before decoding it.

    >>> refuse_huge(20000, 20000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 400000000 pixels (20000x20000) is more than the 64000000 allowed ...
    """
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{width * height} pixels ({width}x{height}) is more than the "
                         f"{MAX_IMAGE_PIXELS} allowed (a decompression bomb?); resize the image")


def load_image_folder(
    folder: Path, image_size: tuple[int, int] | None, skip_bad_files: bool = False
) -> Dataset:
    """Decode every image of a class-per-subfolder folder, resized to ``image_size``."""
    paths, labels, classes = list_image_folder(folder)
    size = image_size or _first_image_size(paths)
    images: list[np.ndarray] = []
    keep: list[int] = []
    bad: list[str] = []
    reason = ""
    for i, path in enumerate(paths):
        try:
            images.append(read_image(path, size))
            keep.append(i)
        except DataError as exc:
            bad.append(str(path))
            reason = reason or str(exc.__cause__ or exc)
    if bad and not skip_bad_files:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataError(
            f"{len(bad)} unreadable image(s): {shown} (first: {reason}); fix or remove them, "
            "or pass --skip-bad-files"
        )
    if not images:
        raise DataError(f"no readable images in {folder}")
    channels = 3 if any(im.shape[-1] == 3 for im in images) else 1
    x = np.stack([convert_channels(im[np.newaxis], channels)[0] for im in images])
    return checked(Dataset(x, labels[keep], classes), str(folder))


def _first_image_size(paths: Sequence[Path]) -> tuple[int, int]:
    """The size of the first image that opens; (1, 1) when none does (each is then
    reported as unreadable)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    for path in paths:
        try:
            with Image.open(path) as image:
                if image.width * image.height <= MAX_IMAGE_PIXELS:
                    return (image.height, image.width)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return (1, 1)


def checked(dataset: Dataset, what: str) -> Dataset:
    """Refuse datasets that cannot train a classifier: fewer than 2 classes with images."""
    present = np.unique(dataset.y)
    if len(present) < 2:
        raise DataError(f"{what} has images of {len(present)} class; a classifier needs >= 2")
    return dataset


def split_dataset(
    dataset: Dataset,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    shots: int | None = None,
) -> Splits:
    """Stratified train/val/test split by seed; ``shots`` keeps K training images per class."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError("val and test fractions must be in (0, 1) and sum to less than 1")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in range(dataset.num_classes):
        index = rng.permutation(np.flatnonzero(dataset.y == label))
        if len(index) < 3:
            raise DataError(
                f"class {dataset.class_names[label]!r} has {len(index)} image(s); "
                "each class needs at least 3 (train, val, test)"
            )
        n_test = max(1, round(len(index) * test_fraction))
        n_val = max(1, round(len(index) * val_fraction))
        train = index[n_test + n_val:]
        if shots is not None:
            if shots < 1:
                raise DataError(f"--shots must be at least 1, got {shots}")
            if shots > len(train):
                raise DataError(
                    f"--shots {shots} is more than class {dataset.class_names[label]!r} has "
                    f"for training ({len(train)}); use --shots {len(train)} or fewer"
                )
            train = train[:shots]
        parts["test"].append(index[:n_test])
        parts["val"].append(index[n_test:n_test + n_val])
        parts["train"].append(train)
    subsets = {name: dataset.subset(np.sort(np.concatenate(idx))) for name, idx in parts.items()}
    return Splits(**subsets)

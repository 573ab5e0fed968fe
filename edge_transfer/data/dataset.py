"""The dataset type every source returns (:class:`Dataset`: images read lazily, labels, class
names, an optional fixed split), its splits, and the readers the sources share (``.npz``, IDX
folders, image folders, the built-in digits and Fashion-MNIST). Loading a data spec is
:func:`edge_transfer.data.load.load_dataset`.

>>> from edge_transfer.data.load import load_dataset
>>> splits = split_dataset(load_dataset("digits:5-9"), seed=0, shots=10)
>>> len(splits.train), len(splits.train.class_names)
(50, 5)
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.errors import DataError
from edge_transfer.core.preprocessing import as_uint8_batch, convert_channels, resize_batch
from edge_transfer.data.images import Images, concat

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DIGITS_PREFIX = "digits"
FASHION_PREFIX = "fashion-mnist"
MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs beyond this
TRAIN, VAL, TEST = 0, 1, 2     # values of Dataset.split_of
SPLIT_FOLDERS = {"train": TRAIN, "val": VAL, "validation": VAL, "test": TEST}
UNION = " + "                  # "A + B": A's classes, then B's (what `extend` trains on)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images as uint8 (N, H, W, C) pixels 0..255 (a lazy :class:`Images` stack; an array
    given here is wrapped), integer labels, and class names.

    ``split_of`` marks pre-split data (per image: 0 train, 1 val, 2 test); ``source_digest``
    is the sha256 of the stored bytes the images come from (None: the pixels are hashed).
    """

    x: Images
    y: np.ndarray
    class_names: tuple[str, ...]
    split_of: np.ndarray | None = None
    source_digest: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.x, Images):
            object.__setattr__(self, "x", Images.of(as_uint8_batch(np.asarray(self.x))))
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray) -> Dataset:
        split_of = None if self.split_of is None else self.split_of[index]
        return replace(self, x=self.x[index], y=self.y[index], split_of=split_of)

    def fingerprint(self) -> str:
        """A short sha256: of the stored bytes (names, sizes, contents) and which images were
        taken, or of the pixels; plus labels and class names. Same data, same fingerprint."""
        if self.source_digest is None:
            digest = self.x.pixel_digest()
        else:
            digest = hashlib.sha256(self.source_digest.encode())
            digest.update(np.ascontiguousarray(self.x.positions.astype(np.int64)).tobytes())
        digest.update(np.ascontiguousarray(self.y.astype(np.int64)).tobytes())
        digest.update("\n".join(self.class_names).encode())
        if self.split_of is not None:
            digest.update(b"split:" + np.ascontiguousarray(self.split_of, np.int8).tobytes())
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


def _as_split(other: Dataset, main: Dataset, split: int, spec: str) -> Dataset:
    """``other``'s images as split ``split`` of ``main``, labels renumbered by class name."""
    unknown = [n for n in other.class_names if n not in main.class_names]
    if unknown:
        raise DataError(f"{spec} has classes {unknown} that the training data lacks; the "
                        f"training classes are {', '.join(main.class_names)}")
    remap = np.asarray([main.class_names.index(n) for n in other.class_names], np.int64)
    return Dataset(other.x, remap[other.y], main.class_names,
                   np.full(len(other), split, np.int8), other.source_digest or
                   other.fingerprint())


def _join(parts: list[Dataset], what: str) -> Dataset:
    channels = max(p.x.image_shape[2] for p in parts)
    stacks = [_with_channels(p.x, channels) for p in parts]
    if len({s.image_shape for s in stacks}) != 1:
        raise DataError(f"{what}: the splits' images differ in size "
                        f"({sorted({s.image_shape for s in stacks})}); give --input-size")
    split_of = np.concatenate([p.split_of if p.split_of is not None
                               else np.zeros(len(p), np.int8) for p in parts]).astype(np.int8)
    digests = [p.source_digest or p.fingerprint() for p in parts]
    return Dataset(concat(stacks), np.concatenate([p.y for p in parts]), parts[0].class_names,
                   split_of, hashlib.sha256(":".join(digests).encode()).hexdigest())


def _with_channels(images: Images, channels: int) -> Images:
    if images.image_shape[2] == channels:
        return images

    def reader(positions: np.ndarray) -> np.ndarray:
        return convert_channels(images.read(positions), channels)

    return Images(reader, np.arange(len(images)), (*images.image_shape[:2], channels))


def parse_class_selection(text: str, known: Sequence[str]) -> list[str]:
    """``"5-9"`` / ``"0,2,4"`` / ``"0-2,7"`` -> class names, in the order given. Numbers are
    class indices when the class names are not numbers themselves (Fashion-MNIST).

    >>> parse_class_selection("1-2", ["cat", "dog", "emu"])
    ['dog', 'emu']
    """
    by_index = not all(name.isdigit() for name in known)
    selected: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part and not (by_index and part in known):
            low, _, high = part.partition("-")
            if not (low.isdigit() and high.isdigit()):
                raise DataError(f"bad class range {part!r}; write it like 5-9")
            if int(low) > int(high):
                raise DataError(f"{part} is a reversed range; write {high}-{low}")
            selected += [str(i) for i in range(int(low), int(high) + 1)]
        else:
            selected.append(part)
    if by_index:
        selected = [known[int(s)] if s.isdigit() and int(s) < len(known) else s
                    for s in selected]
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


def load_fashion_mnist(spec: str = FASHION_PREFIX) -> Dataset:
    """Fashion-MNIST (60,000 train + 10,000 test, 28x28 gray), optionally a class selection
    by index (``fashion-mnist:5-9``); the official test set is the test split."""
    from edge_transfer.data import fashion_mnist

    dataset = load_idx_folder(fashion_mnist.locate(), fashion_mnist.CLASS_NAMES)
    _, _, selection = spec.partition(":")
    if not selection:
        return dataset
    names = parse_class_selection(selection, dataset.class_names)
    return select_classes(dataset, names, spec)


def load_idx_folder(folder: Path, class_names: Sequence[str] | None = None) -> Dataset:
    """The IDX files of a folder (memory-mapped); t10k, when present, is the test split."""
    from edge_transfer.data import idx

    pairs = idx.read_folder(folder)
    y = np.concatenate([p.labels for p in pairs])
    count = int(y.max()) + 1 if len(y) else 0
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(count))
    if count > len(names):
        raise DataError(f"{folder}: labels go up to {count - 1} but the dataset has "
                        f"{len(names)} classes")
    split_of = np.concatenate([np.full(len(p.labels), TEST if p.split == "test" else TRAIN,
                                       np.int8) for p in pairs])
    digest = hashlib.sha256(":".join(p.digest for p in pairs).encode()).hexdigest()
    x = concat([Images.of(p.images) for p in pairs])
    dataset = Dataset(x, y, names, split_of if TEST in split_of else None, digest)
    return checked(dataset, str(folder))


def select_classes(dataset: Dataset, names: Sequence[str], what: str) -> Dataset:
    """Keep the named classes, renumbered 0..k-1 in the order given."""
    if len(names) < 2:
        raise DataError(f"{what} selects {len(names)} class; a classifier needs at least 2")
    old_index = [dataset.class_names.index(n) for n in names]
    keep = np.flatnonzero(np.isin(dataset.y, old_index))
    remap = np.full(max(dataset.num_classes, 1), -1, dtype=np.int64)
    remap[old_index] = np.arange(len(names))
    kept = dataset.subset(keep)
    return replace(kept, y=remap[kept.y], class_names=tuple(names))


def load_npz(path: Path, whole: bool = True) -> Dataset:
    """``x``, ``y`` and optional ``class_names`` from an .npz, never unpickling anything;
    uint8 ``x`` is memory-mapped (an uncompressed member in place, a compressed one from a
    decompressed copy in the cache folder)."""
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); save it again with numpy.savez(x=..., y=...)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"x", "y"} - set(data.files)
            if missing:
                raise DataError(f"{path} lacks arrays {sorted(missing)}; save it with x= and y=")
            y = data["y"]
            names = data["class_names"] if "class_names" in data.files else None
            x: np.ndarray | None = _map_npz_member(path, "x")
            if x is None:
                x = data["x"]
    except ValueError as exc:  # object arrays need pickle, which we refuse
        raise DataError(f"{path} holds object arrays; save plain numeric arrays ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as .npz: {exc}; save it again with "
                        "numpy.savez(x=..., y=...)") from exc
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise DataError(f"{path}: y must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: labels must be >= 0, found {y.min()}")
    images = Images.of(x) if x.dtype == np.uint8 and x.ndim in (3, 4) else as_uint8_batch(x)
    count = int(y.max()) + 1 if len(y) else 0
    class_names = tuple(str(n) for n in names) if names is not None else tuple(
        str(i) for i in range(count)
    )
    if len(class_names) < count:
        raise DataError(f"{path}: labels go up to {count - 1} but only {len(class_names)} names")
    dataset = Dataset(images, y.astype(np.int64), class_names)  # type: ignore[arg-type]
    return checked(dataset, str(path)) if whole else dataset


def _map_npz_member(path: Path, name: str) -> np.ndarray | None:
    """A uint8 member of an .npz as a read-only memmap, or None (not uint8, or unusual)."""
    from edge_transfer.data import idx

    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(f"{name}.npy")
        except KeyError:
            return None
        if info.compress_type == zipfile.ZIP_STORED:
            with path.open("rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)
                start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") \
                    + int.from_bytes(local[28:30], "little")
                f.seek(start)
                shape, fortran, dtype = _npy_header(f)
                offset = f.tell()
            target, offset_in = path, offset
        else:
            with archive.open(info) as member:
                shape, fortran, dtype = _npy_header(member)
            if dtype != np.uint8:
                return None
            digest = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}:"
                                    f"{path.stat().st_mtime_ns}:{info.CRC}".encode())
            target = idx.cache_dir() / f"npz-{digest.hexdigest()[:32]}-{name}.npy"
            if not target.is_file():
                _extract(archive, info, target)
            with target.open("rb") as f:
                shape, fortran, dtype = _npy_header(f)
                offset_in = f.tell()
    if dtype != np.uint8 or fortran or len(shape) not in (3, 4) or 0 in shape:
        return None
    return np.memmap(target, np.uint8, "r", offset=offset_in, shape=shape)


def _npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)  # type: ignore[no-any-return]
    return np.lib.format.read_array_header_2_0(f)  # type: ignore[no-any-return]


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    import os
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, archive.open(info) as member:
            shutil.copyfileobj(member, out, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            mode = "L" if is_gray(image) else "RGB"
            pixels = np.asarray(image.convert(mode))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} is not a usable image: {exc}; give a .png, .jpg, .bmp or .gif "
                        "file, or remove it") from exc
    batch = as_uint8_batch(pixels[np.newaxis])
    if batch.shape[1:3] != size:
        batch = resize_batch(batch, *size)
    return batch[0]


def is_gray(image: Any) -> bool:
    """Whether a Pillow image holds gray pixels: a gray mode, or a palette of grays (how
    Pillow opens a grayscale GIF).

    >>> from PIL import Image
    >>> is_gray(Image.new("L", (2, 2))), is_gray(Image.new("RGB", (2, 2)))
    (True, False)
    >>> red = Image.new("RGB", (2, 2), (255, 0, 0))
    >>> is_gray(Image.new("L", (2, 2)).convert("P")), is_gray(red.quantize())
    (True, False)
    """
    if image.mode in ("L", "I;16", "I", "1"):
        return True
    if image.mode != "P":
        return False
    colours = np.asarray(image.getpalette() or [0, 0, 0]).reshape(-1, 3)
    return bool(np.all(colours == colours[:, :1]))


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


class FileReader:
    """Image files decoded on demand at one size and channel count."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int], channels: int) -> None:
        self.paths, self.size, self.channels = list(paths), size, channels

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty((len(positions), *self.size, self.channels), np.uint8)
        for i, p in enumerate(positions):
            image = read_image(self.paths[int(p)], self.size)
            out[i] = convert_channels(image[np.newaxis], self.channels)[0]
        return out


@dataclass(frozen=True)
class _Scan:
    ok: list[int]
    bad: list[str]
    reason: str
    size: tuple[int, int] | None        # the first readable image's (H, W)
    channels: int
    digest: str


def _maybe_truncated(raw: bytes, image_format: str | None) -> bool:
    """Whether a file Pillow's ``verify`` passed may still be cut short (``verify`` checks
    PNG chunks, not JPEG, BMP or GIF data): a JPEG without an end-of-image marker after its
    last start-of-scan, a BMP shorter than its header says, a GIF without its trailer byte.

    >>> _maybe_truncated(b"\\xff\\xd8...\\xff\\xda...\\xff\\xd9", "JPEG")
    False
    >>> _maybe_truncated(b"\\xff\\xd8...\\xff\\xda...", "JPEG")
    True
    >>> _maybe_truncated(b"GIF89a...;", "GIF"), _maybe_truncated(b"GIF89a...", "GIF")
    (False, True)
    """
    if image_format == "JPEG":
        return raw.rfind(b"\xff\xd9") < raw.rfind(b"\xff\xda")
    if image_format == "BMP" and len(raw) >= 6:
        return int.from_bytes(raw[2:6], "little") > len(raw)
    if image_format == "GIF":
        return not raw.endswith(b";")
    return False


def scan_images(paths: Sequence[Path], root: Path) -> _Scan:
    """Read every file once, in order: sha256 of names (relative to ``root``), sizes and bytes;
    each image's header checked (and Pillow's ``verify``), a JPEG, BMP or GIF that looks cut short
    decoded to be sure; nothing kept. A file that still fails later, when its batch is
    decoded, stops the run with one ``error:`` line naming it (``tfdata.reading``)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    digest = hashlib.sha256()
    ok: list[int] = []
    bad: list[str] = []
    reason, size, channels = "", None, 1
    for i, path in enumerate(paths):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            bad.append(str(path))
            reason = reason or str(exc)
            continue
        name = path.relative_to(root).as_posix()
        digest.update(f"{name}\0{len(raw)}\0".encode())
        digest.update(raw)
        try:
            with Image.open(io.BytesIO(raw)) as image:
                refuse_huge(image.width, image.height)
                gray = is_gray(image)
                image_size = (image.height, image.width)
                image.verify()
            if _maybe_truncated(raw, image.format):
                with Image.open(io.BytesIO(raw)) as image:
                    image.load()        # decoded only when the cheap check is not sure
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            bad.append(str(path))
            reason = reason or str(exc)
            continue
        ok.append(i)
        size = size or image_size
        channels = 1 if gray and channels == 1 else 3
    return _Scan(ok, bad, reason, size, channels, digest.hexdigest())


def load_image_folder(
    folder: Path, image_size: tuple[int, int] | None, skip_bad_files: bool = False,
    whole: bool = True,
) -> Dataset:
    """A class-per-subfolder folder (or a pre-split one) as a lazy stack: the files are read
    once here (checked and hashed) and decoded, resized to ``image_size``, when batches are
    read."""
    layout = _split_layout(folder)
    if layout:
        return _load_presplit(folder, layout, image_size, skip_bad_files)
    paths, labels, classes = list_image_folder(folder)
    scan = scan_images(paths, folder)
    if scan.bad and not skip_bad_files:
        shown = ", ".join(scan.bad[:5]) + (
            f" and {len(scan.bad) - 5} more" if len(scan.bad) > 5 else "")
        raise DataError(
            f"{len(scan.bad)} unreadable image(s): {shown} (first: {scan.reason}); fix or "
            "remove them, or pass --skip-bad-files"
        )
    if not scan.ok:
        raise DataError(f"no readable images in {folder}")
    size = image_size or scan.size or (1, 1)
    keep = np.asarray(scan.ok)
    reader = FileReader([paths[i] for i in keep], size, scan.channels)
    images = Images(reader, np.arange(len(keep)), (size[0], size[1], scan.channels))
    dataset = Dataset(images, labels[keep], classes, source_digest=scan.digest)
    return checked(dataset, str(folder)) if whole else dataset


def _split_layout(folder: Path) -> dict[int, Path]:
    """``{TRAIN: folder/train, VAL: folder/val, TEST: folder/test}`` of a pre-split folder
    (a ``train/`` and at least one of ``val/``, ``validation/``, ``test/``), else empty."""
    found: dict[int, Path] = {}
    for name, split in SPLIT_FOLDERS.items():
        if (folder / name).is_dir():
            if split in found:
                raise DataError(f"{folder} has both val/ and validation/; keep one")
            found[split] = folder / name
    if TRAIN in found and len(found) > 1:
        return found
    return {}


def _load_presplit(folder: Path, layout: dict[int, Path], image_size: tuple[int, int] | None,
                   skip_bad_files: bool) -> Dataset:
    parts = []
    train = None
    for split in sorted(layout):
        sub = layout[split]
        if not any(p.is_dir() for p in sub.iterdir()):
            raise DataError(f"{sub} is empty; put one subfolder per class in it (or remove it)")
        part = load_image_folder(sub, image_size or (train.x.image_shape[:2] if train else None),
                                 skip_bad_files, whole=train is None)
        if train is None:
            train = part
            parts.append(replace(part, split_of=np.full(len(part), TRAIN, np.int8)))
        else:
            parts.append(_as_split(part, train, split, str(sub)))
    return _join(parts, str(folder))


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
    """Stratified train/val/test split by seed; ``shots`` keeps K training images per class.
    Pre-split data keeps its splits; without a val split, ``val_fraction`` of each class's
    training images is set aside for validation."""
    _check_split_options(val_fraction, test_fraction, shots)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in range(dataset.num_classes):
        if dataset.split_of is None:
            train, val, test = _split_class(dataset, label, rng, val_fraction, test_fraction)
        else:
            train, val, test = _split_marked_class(dataset, label, rng, val_fraction,
                                                   test_fraction)
        name = dataset.class_names[label]
        if len(train) == 0:
            raise DataError(f"class {name!r} has no training images; "
                            "add some, or leave the class out")
        parts["test"].append(test)
        parts["val"].append(val)
        parts["train"].append(_shots(train, shots, name))
    subsets = {name: dataset.subset(np.sort(np.concatenate(idx)).astype(np.int64))
               for name, idx in parts.items()}
    for name, subset in subsets.items():
        if len(subset) == 0:
            raise DataError(f"the {name} split of the data is empty; give it images")
    return Splits(**subsets)


def _check_split_options(val_fraction: float, test_fraction: float, shots: int | None) -> None:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError("val and test fractions must be in (0, 1) and sum to less than 1")
    if shots is not None and shots < 1:
        raise DataError(f"--shots must be at least 1, got {shots}")


def _split_class(dataset: Dataset, label: int, rng: np.random.Generator, val_fraction: float,
                 test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of one class of data that is not pre-split."""
    index = rng.permutation(np.flatnonzero(dataset.y == label))
    if len(index) < 3:
        raise DataError(
            f"class {dataset.class_names[label]!r} has {len(index)} image(s); "
            "each class needs at least 3 (train, val, test)"
        )
    n_test = max(1, round(len(index) * test_fraction))
    n_val = max(1, round(len(index) * val_fraction))
    return index[n_test + n_val:], index[n_test:n_test + n_val], index[:n_test]


def _split_marked_class(dataset: Dataset, label: int, rng: np.random.Generator,
                        val_fraction: float,
                        test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices of one class of pre-split data: its given splits; a split
    not given comes out of its training images."""
    marks = dataset.split_of
    assert marks is not None
    of_class = dataset.y == label
    test = np.flatnonzero(of_class & (marks == TEST))
    pool = rng.permutation(np.flatnonzero(of_class & (marks == TRAIN)))
    if not np.any(marks == TEST):  # train/ and val/ only: the test split comes out of train
        n_test = max(1, round(len(pool) * test_fraction)) if len(pool) > 2 else 0
        test, pool = pool[:n_test], pool[n_test:]
    if np.any(marks == VAL):
        return pool, np.flatnonzero(of_class & (marks == VAL)), test
    if len(pool) < 2:
        raise DataError(
            f"class {dataset.class_names[label]!r} has {len(pool)} training "
            "image(s); it needs at least 2 (train, val)")
    n_val = max(1, round(len(pool) * val_fraction))
    return pool[n_val:], pool[:n_val], test


def _shots(train: np.ndarray, shots: int | None, name: str) -> np.ndarray:
    """The first ``shots`` training indices of a class (all when None)."""
    if shots is None:
        return train
    if shots > len(train):
        raise DataError(
            f"--shots {shots} is more than class {name!r} has "
            f"for training ({len(train)}); use --shots {len(train)} or fewer"
        )
    return train[:shots]


def stratified_sample(dataset: Dataset, count: int, seed: int = 0) -> Dataset:
    """``count`` images, each class in its share (at least one each, so more only when
    ``count`` is below the number of classes), seeded; the whole dataset when it is no
    larger.

    >>> from edge_transfer.data.load import load_dataset
    >>> part = stratified_sample(load_dataset("digits:0-1"), 20)
    >>> len(part), np.bincount(part.y).tolist()
    (20, [10, 10])
    >>> len(stratified_sample(load_dataset("digits"), 64)), len(stratified_sample(
    ...     load_dataset("digits"), 99))
    (64, 99)
    """
    if len(dataset) <= count:
        return dataset
    rng = np.random.default_rng(seed)
    labels, sizes = np.unique(dataset.y, return_counts=True)
    exact = count * sizes / len(dataset)
    shares = np.maximum(1, np.floor(exact)).astype(int)
    left = count - int(shares.sum())          # largest remainders first, so the total is
    if left > 0:                              # ``count`` (more only with more classes)
        shares[np.argsort(-(exact - np.floor(exact)), kind="stable")[:left]] += 1
    keep = [rng.permutation(np.flatnonzero(dataset.y == label))[:share]
            for label, share in zip(labels, shares, strict=True)]
    return dataset.subset(np.sort(np.concatenate(keep)))

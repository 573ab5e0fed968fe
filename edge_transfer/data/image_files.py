"""Image files: one file decoded at a size (``read_image``, refusing decompression bombs), a
class-per-subfolder folder listed (``list_image_folder``), a list of files checked and hashed
once (``scan_images``) then decoded batch by batch (``FileReader``), and a folder, plain or
pre-split into ``train/``, ``val/``, ``test/``, as a lazy
:class:`~edge_transfer.data.dataset.Dataset` (``load_image_folder``).

>>> from PIL import Image
>>> is_gray(Image.new("L", (2, 2)))
True
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.errors import DataError
from edge_transfer.core.preprocessing import as_uint8_batch, convert_channels, resize_batch
from edge_transfer.data.dataset import TEST, TRAIN, VAL, Dataset, _as_split, _join, checked
from edge_transfer.data.images import Images

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs beyond this
SPLIT_FOLDERS = {"train": TRAIN, "val": VAL, "validation": VAL, "test": TEST}


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
    return files_dataset(paths, labels, classes, folder, image_size, skip_bad_files, whole)


def files_dataset(paths: Sequence[Path], labels: np.ndarray, classes: tuple[str, ...],
                  root: Path, image_size: tuple[int, int] | None, skip_bad_files: bool,
                  whole: bool, manifest: Path | None = None) -> Dataset:
    """Image files under ``root`` with their labels as a lazy stack: read once here (checked
    and hashed; an unreadable one refused, or left out with ``skip_bad_files``) and decoded,
    resized to ``image_size``, when batches are read. ``manifest``: the file that listed
    them (named in the errors), else the files are ``root``'s folder."""
    scan = scan_images(paths, root)
    if scan.bad and not skip_bad_files:
        shown = ", ".join(scan.bad[:5]) + (
            f" and {len(scan.bad) - 5} more" if len(scan.bad) > 5 else "")
        listed = f" listed in {manifest}" if manifest else ""
        raise DataError(
            f"{len(scan.bad)} unreadable image(s){listed}: {shown} (first: {scan.reason}); "
            "fix or remove them, or pass --skip-bad-files"
        )
    if not scan.ok:
        raise DataError(f"no readable images listed in {manifest}" if manifest
                        else f"no readable images in {root}")
    size = image_size or scan.size or (1, 1)
    keep = np.asarray(scan.ok)
    reader = FileReader([paths[i] for i in keep], size, scan.channels)
    images = Images(reader, np.arange(len(keep)), (size[0], size[1], scan.channels))
    dataset = Dataset(images, labels[keep], classes, source_digest=scan.digest)
    return checked(dataset, str(manifest or root)) if whole else dataset


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

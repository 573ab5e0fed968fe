"""MNIST-format IDX files (Fashion-MNIST, MNIST, KMNIST, EMNIST): memory-mapped, never loaded
whole.

A folder holds an image file and a label file per split, named as the datasets ship them:
``train-images-idx3-ubyte[.gz]`` + ``train-labels-idx1-ubyte[.gz]`` and the same with ``t10k``
(or ``test``); a common prefix (``emnist-balanced-``) and ``.`` instead of the last ``-`` are
accepted. Raw files are memory-mapped where they lie; a ``.gz`` is decompressed once into the
cache folder (``$EDGE_TRANSFER_CACHE``, else ``$XDG_CACHE_HOME/edge-transfer``, else
``~/.cache/edge-transfer``), named by the sha256 of its bytes, and memory-mapped from there.

>>> header = (0x0803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2, 3, 3))
>>> parse_header(header, "x", images=True)
(2, 3, 3)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_transfer.core.errors import DataError

IMAGES_MAGIC = 0x00000803   # unsigned bytes, 3 dimensions (N, rows, columns)
LABELS_MAGIC = 0x00000801   # unsigned bytes, 1 dimension (N,)
SPLIT_NAMES = {"train": "train", "t10k": "test", "test": "test"}
_FILE = re.compile(r"^(?P<prefix>.*?)(?P<split>train|t10k|test)-(?P<kind>images|labels)"
                   r"[-.]idx(?P<dims>[13])-ubyte(?P<gz>\.gz)?$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class IdxPair:
    """One split's images (memory-mapped uint8 (N, H, W)) and labels (int64 (N,))."""

    split: str
    images: np.ndarray
    labels: np.ndarray
    digest: str                         # sha256 over both files' bytes as stored


def cache_dir() -> Path:
    """Where decompressed IDX files (and other decoded data) are kept."""
    if os.environ.get("EDGE_TRANSFER_CACHE"):
        return Path(os.environ["EDGE_TRANSFER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-transfer"


def find_files(folder: Path) -> dict[str, dict[str, Path]]:
    """``{"train": {"images": p, "labels": p}, "test": {...}}`` of the IDX files in a folder."""
    found: dict[str, dict[str, dict[str, Path]]] = {}
    for path in sorted(folder.iterdir()):
        match = _FILE.match(path.name)
        if match and path.is_file():
            split = SPLIT_NAMES[match["split"]]
            found.setdefault(match["prefix"], {}).setdefault(split, {})[match["kind"]] = path
    if len(found) > 1:
        raise DataError(f"{folder} holds IDX files of several datasets "
                        f"({', '.join(repr(p) for p in sorted(found))}); put each in its own "
                        "folder")
    return next(iter(found.values()), {})


def is_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and bool(find_files(folder))


def read_folder(folder: Path) -> list[IdxPair]:
    """The splits of an IDX folder (train first), each checked: magic, counts, sizes."""
    files = find_files(folder)
    pairs = []
    for split in ("train", "test"):
        if split not in files:
            continue
        kinds = files[split]
        missing = {"images", "labels"} - kinds.keys()
        if missing:
            raise DataError(f"{folder}: the {split} images and labels come in pairs; the "
                            f"{missing.pop()} file is missing")
        pairs.append(read_pair(kinds["images"], kinds["labels"], split))
    if not pairs:
        raise DataError(f"{folder} holds no train-images-idx3-ubyte[.gz] / "
                        "train-labels-idx1-ubyte[.gz] pair")
    return pairs


def read_pair(images_path: Path, labels_path: Path, split: str = "train") -> IdxPair:
    """An images file and its labels file, memory-mapped and checked against each other."""
    labels, labels_digest = read_labels(labels_path)
    images, images_digest = map_images(images_path)
    if len(images) != len(labels):
        raise DataError(f"{images_path.name} holds {len(images)} images but "
                        f"{labels_path.name} {len(labels)} labels; use the files of one "
                        "dataset release")
    digest = hashlib.sha256(f"{images_digest}:{labels_digest}".encode()).hexdigest()
    return IdxPair(split, images, labels, digest)


def parse_header(head: bytes, name: str, images: bool) -> tuple[int, ...]:
    """The dimensions in an IDX header (magic checked)."""
    magic = IMAGES_MAGIC if images else LABELS_MAGIC
    dims = 3 if images else 1
    if len(head) < 4 + 4 * dims:
        raise DataError(f"{name} is too short for an IDX header ({len(head)} bytes); "
                        "download the file again")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise DataError(f"{name} is not an IDX {'image' if images else 'label'} file "
                        f"(magic 0x{found:08x}, expected 0x{magic:08x}); give the "
                        f"{'images-idx3' if images else 'labels-idx1'}-ubyte file")
    return tuple(int.from_bytes(head[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))


def read_labels(path: Path) -> tuple[np.ndarray, str]:
    """Labels (int64) and the file's sha256; labels are small, read whole."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if path.suffix == ".gz":
        raw = _gunzip_bytes(raw, path)
    (count,) = parse_header(raw[:8], path.name, images=False)
    body = raw[8:]
    if len(body) != count:
        raise DataError(f"{path.name} says {count} labels but holds {len(body)}; the file is "
                        "truncated or damaged, download it again")
    return np.frombuffer(body, np.uint8).astype(np.int64), digest


def map_images(path: Path) -> tuple[np.ndarray, str]:
    """Images as a read-only uint8 memmap (N, H, W) and the file's sha256."""
    digest = _sha256(path)
    raw = path
    if path.suffix == ".gz":
        raw = cache_dir() / f"idx-{digest}.u8"
        if not raw.is_file():
            _gunzip_to(path, raw)
    with raw.open("rb") as f:
        head = f.read(16)
    count, rows, cols = parse_header(head, path.name, images=True)
    expected = 16 + count * rows * cols
    size = raw.stat().st_size
    if size != expected:
        raise DataError(f"{path.name} says {count} images of {rows}x{cols} ({expected} bytes) "
                        f"but holds {size} bytes; the file is truncated or damaged, download "
                        "it again")
    if count == 0:
        return np.zeros((0, rows, cols), np.uint8), digest
    return np.memmap(raw, np.uint8, "r", offset=16, shape=(count, rows, cols)), digest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _gunzip_bytes(raw: bytes, path: Path) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a complete gzip file ({exc}); download it again") \
            from exc


def _gunzip_to(path: Path, target: Path) -> None:
    """Decompress ``path`` into ``target`` through a temporary file (removed on failure)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "rb") as src:
        try:
            head = src.read(16)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is not a complete gzip file ({exc}); download it "
                            "again") from exc
        parse_header(head, path.name, images=True)  # refuse a wrong file before writing
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(head)
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    out.write(chunk)
            os.replace(tmp, target)
        except (OSError, EOFError, zlib.error) as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) \
                    and exc.errno is not None:
                raise DataError(f"cannot write the decompressed copy of {path.name} to "
                                f"{target.parent}: {exc.strerror}; set EDGE_TRANSFER_CACHE "
                                "to a writable folder") from exc
            raise DataError(f"{path} is not a complete gzip file ({exc}); download it "
                            "again") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

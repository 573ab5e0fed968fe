"""``.npz`` files as a :class:`~edge_transfer.data.dataset.Dataset`: arrays ``x``, ``y`` and
optional ``class_names``, never unpickled; uint8 ``x`` memory-mapped.

>>> import tempfile, numpy as np
>>> path = Path(tempfile.mkdtemp()) / "d.npz"
>>> np.savez(path, x=np.zeros((4, 2, 2), np.uint8), y=np.array([0, 1, 0, 1]))
>>> dataset = load_npz(path)
>>> dataset.class_names, dataset.x.image_shape
(('0', '1'), (2, 2, 1))
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.errors import DataError
from edge_transfer.core.preprocessing import as_uint8_batch
from edge_transfer.data.dataset import Dataset, checked
from edge_transfer.data.images import Images


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

"""Files written whole or not at all: a temporary name beside the target, fsync, rename.

Every file edge-transfer writes (models, artifacts, manifests, reports, JSON) goes through
here, so a killed process never leaves a half-written file under the real name.

>>> import tempfile, pathlib
>>> target = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
>>> write_text_atomic(target, "hi\\n")
>>> target.read_text()
'hi\\n'
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_transfer.core.errors import UserError


@contextmanager
def atomic_path(path: Path, parents: bool = False, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that want a file name (model savers,
    plots): when the block ends, the file is fsync'ed and renamed to ``path``; on an error
    it is deleted and ``path`` is untouched. ``keep_suffix=True`` ends the temporary name
    with ``path``'s suffix too, for writers that choose the format by it (``.keras``).

    A path that cannot be written (no such folder, a folder, no permission, disk full) is a
    :class:`~edge_transfer.core.errors.UserError` naming it.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "plot.png"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_bytes(b"png")
    >>> target.read_bytes(), tmp.exists()
    (b'png', False)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix if keep_suffix else ''}")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder")
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        _remove(tmp)
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); give a file path in a "
                        "writable folder") from exc
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes, parents: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``parents=True`` creates missing folders.

    A path that cannot be written (no such folder, a folder, no permission, disk full) is a
    :class:`~edge_transfer.core.errors.UserError` naming it.
    """
    with atomic_path(path, parents=parents) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: Path, text: str, parents: bool = False) -> None:
    """:func:`write_bytes_atomic` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"), parents=parents)

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
from pathlib import Path

from edge_transfer.errors import UserError


def write_bytes_atomic(path: Path, data: bytes, parents: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``parents=True`` creates missing folders.

    A path that cannot be written (no such folder, a folder, no permission, disk full) is a
    :class:`~edge_transfer.errors.UserError` naming it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a folder")
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); give a file path in a "
                        "writable folder") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, parents: bool = False) -> None:
    """:func:`write_bytes_atomic` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"), parents=parents)

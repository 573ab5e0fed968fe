"""Atomic writes and the size/digest facts of a written file."""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name beside ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


@dataclass(frozen=True)
class FileFacts:
    bytes: int
    gzip_bytes: int
    sha256: str


def file_facts(data: bytes) -> FileFacts:
    """Size, gzip size (what pruning pays off in) and sha256 of a file's content.

    >>> file_facts(b"abc").sha256[:8]
    'ba7816bf'
    """
    return FileFacts(
        bytes=len(data),
        gzip_bytes=len(gzip.compress(data, compresslevel=9, mtime=0)),
        sha256=hashlib.sha256(data).hexdigest(),
    )

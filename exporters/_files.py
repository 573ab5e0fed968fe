"""The size and digest facts of a written file."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass


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

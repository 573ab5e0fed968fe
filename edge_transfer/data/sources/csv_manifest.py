"""``FILE.csv``: a manifest of images, one ``path,label`` per line.

An optional header ``path,label`` is skipped; blank lines too. Paths are relative to the CSV's
folder and must stay inside it (no absolute path, no ``..`` leading out, no link pointing out):
a manifest names files of its own folder, nothing else on the machine. Class names are the
labels, sorted; the files are checked and hashed once, then decoded batch by batch like an
image folder's.

>>> parse_rows(["path,label", "cats/1.png,cat", "", "dogs/2.png , dog"], "m.csv")
[('cats/1.png', 'cat'), ('dogs/2.png', 'dog')]
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from edge_transfer.core.errors import DataError
from edge_transfer.data.sources import Request, Source

if TYPE_CHECKING:
    from edge_transfer.data.dataset import Dataset

HEADER = ("path", "label")


def parse_rows(lines: Iterable[str], what: str) -> list[tuple[str, str]]:
    """``(path, label)`` of each non-blank line; a header line ``path,label`` is skipped."""
    rows: list[tuple[str, str]] = []
    for number, row in enumerate(csv.reader(lines), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if len(cells) != 2 or not all(cells):
            raise DataError(f"{what} line {number}: expected path,label, got {row!r}")
        if number == 1 and tuple(c.lower() for c in cells) == HEADER:
            continue
        rows.append((cells[0], cells[1]))
    if not rows:
        raise DataError(f"{what} lists no images; write one path,label per line")
    return rows


def inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative``, refused (DataError) if it leads outside ``root``."""
    path = root / relative
    resolved = path.resolve()
    if Path(relative).is_absolute() or not resolved.is_relative_to(root.resolve()):
        raise DataError(f"{what}: {relative} leads outside the manifest's folder {root}; give "
                        "paths relative to the CSV, to files under its folder")
    return path


def load(request: Request) -> Dataset:
    import numpy as np

    from edge_transfer.data import image_files

    manifest = request.path
    assert manifest is not None
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = parse_rows(f, str(manifest))
    root = manifest.parent
    paths = [inside(root, name, str(manifest)) for name, _ in rows]
    classes = tuple(sorted({label for _, label in rows}))
    labels = np.asarray([classes.index(label) for _, label in rows], np.int64)
    return image_files.files_dataset(paths, labels, classes, root, request.image_size,
                                     request.skip_bad_files, request.whole, manifest=manifest)


SOURCE = Source(syntax="FILE.csv", suffix=".csv", load=load,
                help="a manifest of path,label lines (optional header; paths relative to the "
                     "CSV, inside its folder)")

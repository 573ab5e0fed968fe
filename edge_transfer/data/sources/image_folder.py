"""``IMAGE-FOLDER``: one subfolder per class, or ``train/``, ``val/``, ``test/`` ones.

Tried last among folder sources: it accepts any folder (and explains what it lacks).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge_transfer.data.sources import Request, Source

if TYPE_CHECKING:
    from edge_transfer.data.dataset import Dataset


def any_folder(_: Path) -> bool:
    return True


def load(request: Request) -> Dataset:
    from edge_transfer.data.image_files import load_image_folder

    assert request.path is not None
    return load_image_folder(request.path, request.image_size, request.skip_bad_files,
                             request.whole)


SOURCE = Source(syntax="IMAGE-FOLDER", folder=any_folder, order=90, load=load,
                help="one subfolder of jpg/png/bmp/gif files per class (or train/, val/ and "
                     "test/ subfolders, used as given)")

"""Data sources: one module per kind of ``--data`` spec, found by this registry.

A source module defines ``SOURCE = Source(...)``: how its spec is recognised (a built-in
``prefix``, a file ``suffix`` or a ``folder`` test), how it is written (``syntax``), one line of
``help`` and its ``load`` function. Adding a source is adding a module here: the ``--data`` help,
the error listing the kinds and the README's list (checked by a test) all come from
:func:`registered`. Modules here stay light: heavy or data imports only inside ``load``.

>>> [s.syntax for s in registered()][:2]
['digits[:A-B]', 'fashion-mnist[:A-B]']
>>> find("digits:5-9").syntax
'digits[:A-B]'
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_transfer.core.errors import DataError

if TYPE_CHECKING:
    from edge_transfer.data.dataset import Dataset


@dataclass(frozen=True)
class Request:
    """What a source's ``load`` gets: the spec as given, its path (None for a built-in), the
    image size to resize files to, whether to skip unreadable files, and ``whole`` (False:
    a val/test split, which may hold a single class)."""

    spec: str
    path: Path | None
    image_size: tuple[int, int] | None = None
    skip_bad_files: bool = False
    whole: bool = True


@dataclass(frozen=True)
class Source:
    """One kind of data spec. Exactly one of ``prefix`` (a built-in name, ``NAME`` or
    ``NAME:SELECTION``), ``suffix`` (a file ending so, case-insensitive) or ``folder`` (a
    folder it accepts) says how it is recognised; folder sources are tried by ``order``."""

    syntax: str
    help: str
    load: Callable[[Request], Dataset]
    prefix: str | None = None
    suffix: str | None = None
    folder: Callable[[Path], bool] | None = None
    order: int = 50

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.prefix, self.suffix, self.folder)) != 1:
            raise ValueError(f"source {self.syntax}: give exactly one of prefix, suffix, folder")

    def names(self, spec: str) -> bool:
        """Whether ``spec`` is this built-in's name (``digits``, ``digits:5-9``)."""
        return self.prefix is not None and (spec == self.prefix
                                            or spec.startswith(self.prefix + ":"))


def _rank(source: Source) -> tuple[int, int, str]:
    kind = 0 if source.prefix is not None else 1 if source.suffix is not None else 2
    return kind, source.order, source.syntax


@functools.cache
def registered() -> tuple[Source, ...]:
    """Every module's ``SOURCE``: built-ins, then files by suffix, then folders by order."""
    found = []
    for module in pkgutil.iter_modules(__path__):
        source = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SOURCE", None)
        if isinstance(source, Source):
            found.append(source)
    return tuple(sorted(found, key=_rank))


def kinds() -> str:
    """The kinds of spec, for an error message: ``digits[:A-B], ... or FOLDER``."""
    syntaxes = [s.syntax for s in registered()]
    return ", ".join(syntaxes[:-1]) + " or " + syntaxes[-1]


def help_text() -> str:
    """The ``--data`` help: each source's syntax and help line."""
    return "; ".join(f"{s.syntax}: {s.help}" for s in registered()) + \
        "; images are streamed from disk"


def is_built_in(spec: str) -> bool:
    """Whether ``spec`` names a built-in dataset rather than a path."""
    return any(s.names(spec) for s in registered())


def find(spec: str) -> Source:
    """The source that reads ``spec``, or a :class:`DataError` listing the kinds.

    >>> find("/no/such/file.npz")
    Traceback (most recent call last):
    ...
    edge_transfer.core.errors.DataError: /no/such/file.npz does not exist; give digits[:A-B], ...
    """
    for source in registered():
        if source.names(spec):
            return source
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec} does not exist; give {kinds()}")
    for source in registered():
        if path.is_dir() and source.folder is not None and source.folder(path):
            return source
        if not path.is_dir() and source.suffix is not None \
                and path.name.lower().endswith(source.suffix):
            return source
    raise DataError(f"{spec} is not a kind of data this reads; give {kinds()}")

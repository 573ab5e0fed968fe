"""Config fields that are also command-line options: one place for a default and its help.

``option(default, help, **more)`` is a :func:`dataclasses.field` whose metadata the CLI reads
(:mod:`edge_transfer.commands._options` turns it into an argparse option): ``help``, and
optionally ``flag``, ``aliases`` (old spellings, hidden), ``choices``, ``names`` and
``metavar``. The library itself never reads the metadata. :func:`renamed` accepts a field's
old keyword for one release.

>>> from dataclasses import dataclass, fields
>>> @dataclass(frozen=True)
... class Demo:
...     batch_size: int = option(32, "global batch size")
>>> Demo().batch_size, fields(Demo)[0].metadata["help"]
(32, 'global batch size')
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any


def option(default: Any, help: str, **more: Any) -> Any:
    """A dataclass field with ``default`` that is the command-line option ``help`` explains."""
    return dataclasses.field(default=default, metadata={"help": help, **more})


def required(help: str, **more: Any) -> Any:
    """A dataclass field without a default: a required command-line option."""
    return dataclasses.field(metadata={"help": help, **more})


def renamed(config: Any, old: str, new: str, value: Any) -> None:
    """In ``__post_init__``: the value of ``new`` given by its old keyword ``old`` (an
    ``InitVar`` defaulting to None), with a DeprecationWarning; accepted for one release.

    >>> import warnings
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     out: str = "run"
    ...     out_dir: dataclasses.InitVar[str | None] = None
    ...     def __post_init__(self, out_dir: str | None) -> None:
    ...         renamed(self, "out_dir", "out", out_dir)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     Demo(out_dir="elsewhere").out
    'elsewhere'
    """
    if value is not None:
        warnings.warn(f"{type(config).__name__}({old}=...) is now {new}=", DeprecationWarning,
                      stacklevel=4)
        object.__setattr__(config, new, value)

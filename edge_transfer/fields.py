"""Config fields that are also command-line options: one place for a default and its help.

``option(default, help, **more)`` is a :func:`dataclasses.field` whose metadata the CLI reads
(:mod:`edge_transfer.commands._options` turns it into an argparse option): ``help``, and
optionally ``flag``, ``aliases`` (old spellings, hidden), ``choices``, ``names`` and
``metavar``. The library itself never reads the metadata.

>>> from dataclasses import dataclass, fields
>>> @dataclass(frozen=True)
... class Demo:
...     batch_size: int = option(32, "global batch size")
>>> Demo().batch_size, fields(Demo)[0].metadata["help"]
(32, 'global batch size')
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any, help: str, **more: Any) -> Any:
    """A dataclass field with ``default`` that is the command-line option ``help`` explains."""
    return dataclasses.field(default=default, metadata={"help": help, **more})


def required(help: str, **more: Any) -> Any:
    """A dataclass field without a default: a required command-line option."""
    return dataclasses.field(metadata={"help": help, **more})

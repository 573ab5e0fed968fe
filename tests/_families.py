"""Which backbone families a family sweep tests (``tests/test_backbone_families.py`` and
``tests/test_backbone_files.py``): a small sample by default, every keras.applications
family or a list through an environment variable."""

from __future__ import annotations

import os

from edge_transfer.train import backbones


def chosen(variable: str, sample: tuple[str, ...]) -> tuple[str, ...]:
    """``$variable`` = ``all``: the first backbone of every keras.applications family; a comma
    list: those names; unset or empty: ``sample``."""
    wanted = os.environ.get(variable, "")
    if wanted == "all":
        return tuple(names[0] for names in backbones.families(applications=True).values())
    return tuple(n.strip() for n in wanted.split(",") if n.strip()) or sample

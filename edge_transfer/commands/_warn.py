"""One yellow ``warning:`` line on stderr, for what a user must not miss but that is no error."""

from __future__ import annotations


def warn(line: str | None) -> None:
    """Print ``warning: LINE`` in yellow on stderr (nothing when ``line`` is None or empty)."""
    if not line:
        return
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {line}", highlight=False,
                                               markup=True)

"""The file x client table of ``validate --client`` (the report's is in
:mod:`edge_transfer.report.markdown`), and the lines about clients that are not installed.

>>> result = {"artifacts": [{"name": "tflite-fp32"}], "clients": [
...     {"artifact": "tflite-fp32", "client": "litert", "status": "missing",
...      "reason": "ai-edge-litert is not installed for /usr/bin/python3"}]}
>>> missing_lines(result)
['litert: ai-edge-litert is not installed for /usr/bin/python3']
>>> columns, cells, reasons = client_grid(result)
>>> columns, cells
(['litert'], [['tflite-fp32', 'missing']])
"""

from __future__ import annotations

from typing import Any

from edge_transfer.core.records.validation import ClientRow


def client_grid(result: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """(client columns, one row of cells per file, the reasons of rows that did not run)."""
    rows = [ClientRow.from_dict(r) for r in result.get("clients") or ()]
    clients = list(dict.fromkeys(r.client for r in rows))
    cells = {(r.artifact, r.client): r for r in rows}
    files = [a["name"] for a in result["artifacts"] if any(r.artifact == a["name"]
                                                           for r in rows)]
    grid = [[name, *[cells[name, c].cell() if (name, c) in cells else "-" for c in clients]]
            for name in files]
    reasons = [f"{r.artifact} in {r.client}: {r.reason}" for r in rows if r.reason]
    return clients, grid, reasons


def print_clients(result: dict[str, Any], stderr: bool = False) -> None:
    """The table (top-1 agreement with our runtime on the same images), then the reasons."""
    from rich.console import Console
    from rich.table import Table

    clients, grid, reasons = client_grid(result)
    table = Table(title="deploy clients: top-1 agreement with our runtime [95%], p of the "
                        "paired accuracy difference (- : the client does not read the format)")
    for column in ("File", *clients):
        table.add_column(column)
    for cells in grid:
        table.add_row(*cells)
    console = Console(width=200, stderr=stderr)
    console.print(table)
    for line in reasons:
        console.print(f"  {line}", highlight=False)


def missing_lines(result: dict[str, Any]) -> list[str]:
    """One line per client that is not installed where the validation ran."""
    seen: dict[str, str] = {}
    for row in result.get("clients") or ():
        if row["status"] == "missing":
            seen.setdefault(row["client"], row["reason"])
    return [f"{client}: {reason}" for client, reason in seen.items()]

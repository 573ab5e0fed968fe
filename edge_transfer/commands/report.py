"""``edge-transfer report RUN``: report.json, report.md and the accuracy-vs-size plot."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="accuracy-vs-size report of a run's artifacts (JSON, Markdown, plots)",
        description="Collect a run's metrics, its export record and (optionally) a device "
                    "validation into report.json, report.md and accuracy_vs_size.png.",
    )
    p.add_argument("run", type=Path, metavar="RUN", help="run directory written by finetune")
    p.add_argument("--export", type=Path, metavar="DIR",
                   help="export folder or export.json (default: RUN/export)")
    p.add_argument("--validation", type=Path, metavar="JSON",
                   help="validation JSON from `edge-transfer validate --json`")
    p.add_argument("--out", type=Path, metavar="DIR", help="report folder (default: RUN/report)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from edge_transfer.report import TABLE_COLUMNS, build_report, table_cells

    path = build_report(args.run, args.out or args.run / "report", args.export, args.validation)
    report = json.loads(path.read_text())
    table = Table(*TABLE_COLUMNS[:-1], title=f"artifacts of {args.run}")
    for row in report["artifacts"]:
        cells = table_cells(row)[:-1]
        table.add_row(*cells, style=None if row["status"] == "ok" else "red")
    console = Console()
    console.print(table)
    failed = [r["name"] for r in report["artifacts"] if r["status"] != "ok"]
    if failed:
        console.print(f"[red]failed:[/red] {', '.join(failed)} (reasons in report.md)")
    console.print(f"report: {path.parent / report['files']['markdown']}  ({path.name}, "
                  f"{report['files']['plot']})", soft_wrap=True)
    return 0

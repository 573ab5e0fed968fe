"""``edge-transfer report RUN``: report.json, report.md and the accuracy-vs-size plot."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

# (header, index into report.markdown.TABLE_COLUMNS): the Markdown table, narrowed for 80 columns.
_TERMINAL_COLUMNS = (("artifact", 0), ("status", 3), ("size", 4), ("×fp32", 5), ("acc", 6),
                     ("device", 7), ("Δ float", 8), ("p50 ms", 9), ("FPS", 10), ("MB", 11))

# The terminal shows point figures (with p-values); report.md keeps the 95% intervals.
_INTERVAL = re.compile(r" \[[^\]]*\]")


HELP = "accuracy-vs-size report of a run's artifacts (JSON, Markdown, plots)"
DESCRIPTION = ("Collect a run's metrics, its export record and (optionally) a device "
               "validation into report.json, report.md and accuracy_vs_size.png.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, metavar="RUN", help="run directory written by finetune")
    parser.add_argument("--export", type=Path, metavar="DIR",
                        help="export folder or export.json (default: RUN/export)")
    parser.add_argument("--validation", type=Path, metavar="JSON", action="append",
                        help="validation JSON from `edge-transfer validate --json`; repeat it for "
                        "more devices (the first fills the table; each gets the file to "
                        "deploy and an accuracy-vs-latency plot)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="report folder (default: RUN/report)")


def run(args: argparse.Namespace) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from edge_transfer.core.records.report import Report, ReportFiles
    from edge_transfer.report.build import build_report
    from edge_transfer.report.markdown import table_cells

    path = build_report(args.run, args.out or args.run / "report", args.export, args.validation)
    report = Report.load(path)
    table = Table(title=f"artifacts of {args.run}", box=box.SIMPLE_HEAD, pad_edge=False)
    columns: tuple[tuple[str, int], ...] = _TERMINAL_COLUMNS
    if any(r.agreement_top1 is not None for r in report.artifacts):
        columns += (("agree", 14), ("max diff", 15))  # another device against the workstation
    for header, index in columns:
        table.add_column(header, no_wrap=True, justify="left" if index < 4 else "right")
    for row in report.artifacts:
        cells = [_INTERVAL.sub("", cell) for cell in table_cells(row)]
        table.add_row(*(cells[i] for _, i in columns),
                      style=None if row.status == "ok" else "red")
    console = Console()
    if not console.is_terminal:  # logs and pipes: no reason to squeeze into 80 columns
        console = Console(width=120)
    console.print(table)
    from edge_transfer.commands._warn import warn

    for line in report.warnings:
        warn(line)
    failed = [r.name for r in report.artifacts if r.status != "ok"]
    if failed:
        console.print(f"[red]failed:[/red] {', '.join(failed)} (reasons in report.md)")
    files = report.files or ReportFiles()
    for rec in report.recommendations:
        where = rec.device + (f" (profile {rec.profile})" if rec.profile else "")
        console.print(f"deploy on {where}: {rec.reason}", soft_wrap=True)
        for line in rec.trades:
            console.print(f"  {line}", soft_wrap=True)
    plots = ", ".join([files.plot or "", *files.latency_plots]).strip(", ")
    console.print(f"report: {path.parent / files.markdown}  ({path.name}, {plots}; "
                  "95% intervals in the Markdown)", soft_wrap=True)
    return 0

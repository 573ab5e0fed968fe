"""``edge-transfer check REPORT --baseline BASELINE``: the regression gate for CI."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_transfer.commands._options import add_config_options, config_kwargs
from edge_transfer.report.gate import Tolerances

HELP = "compare a report with a baseline; exit 1 on a regression"
DESCRIPTION = ("Compare REPORT with BASELINE row by row (artifact name). Exit 0 when all "
               "holds, 1 when an artifact lost accuracy, grew, drifted on the device, "
               "failed or disappeared, 2 on bad input.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("report", type=Path, metavar="REPORT", help="report.json to check")
    parser.add_argument("--baseline", type=Path, required=True, metavar="BASELINE",
                        help="the report.json to hold it to")
    add_config_options(parser, Tolerances)
    parser.add_argument("--junit", type=Path, metavar="OUT.xml", help="also write JUnit XML")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edge_transfer.report import gate

    tolerances = Tolerances(**config_kwargs(args, Tolerances))
    result = gate.check(gate.load_report(args.report), gate.load_report(args.baseline),
                        tolerances)
    console = Console()
    if result.data_fingerprint != result.baseline_fingerprint:
        console.print(f"[yellow]comparing different data[/yellow] ({result.data_fingerprint} "
                      f"vs baseline {result.baseline_fingerprint})")
    if result.regressions:
        table = Table("artifact", "criterion", "baseline", "now", "change", "limit",
                      title="regressions", title_style="bold red")
        for cells in gate.criteria_table(result.regressions):
            table.add_row(*cells[:-1])
        console.print(table)
        for f in result.regressions:
            console.print(f"[red]REGRESSION[/red] {f.message}", soft_wrap=True)
    for note in gate.notes(result)[:1]:
        console.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True, highlight=False)
    if args.junit:
        gate.write_junit(result, args.junit)
    gate.append_step_summary(result, tolerances)
    checked = sum(f.verdict != "skip" for f in result.findings)
    verdict = ("[green]all holds[/green]" if result.ok
               else f"[red]{len(result.regressions)} regression(s)[/red]")
    console.print(f"{verdict}: {checked} checks on {len(result.artifacts)} artifacts "
                  f"against {args.baseline}", soft_wrap=True)
    return 0 if result.ok else 1

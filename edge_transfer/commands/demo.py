"""``edge-transfer demo``: the shipped pipeline on the built-in digits tasks, end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_CONFIG = "configs/demo.toml"


HELP = ("pretrain on digits 0-4, fine-tune on 5-9 (5 shots), export, "
        "validate locally, report")
DESCRIPTION = ("Run the shipped pipeline (edge_transfer/configs/demo.toml) on the "
               "built-in digits data and print where the report is.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("edge-transfer-demo"), metavar="DIR",
                        help="work folder (default: ./edge-transfer-demo)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")


def run(args: argparse.Namespace) -> int:
    from importlib.resources import as_file, files

    from edge_transfer.commands._pipeline import load_pipeline, run_pipeline

    with as_file(files("edge_transfer").joinpath(DEMO_CONFIG)) as config:
        pipeline = load_pipeline(config, out=args.out)
        results = run_pipeline(pipeline, dry_run=args.dry_run)
    # The report step printed where the report is ("report: .../report.md"), just before
    # "[6/6] report: done": not printed a second time here.
    return next((r.exit_code for r in results if r.exit_code), 0)

"""``edge-transfer run PIPELINE.toml``: pretrain -> ... -> check from one config file."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "run a pipeline file: pretrain, finetune, export, bundle, validate, report, check"
DESCRIPTION = ("Run the steps of PIPELINE.toml in order. Each table is a step; its keys "
               "are the long options of that command (shots = 10 is --shots 10).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", type=Path, metavar="PIPELINE.toml", help="the pipeline file")
    parser.add_argument("--only", type=_steps, default=(), metavar="STEP,...",
                        help="run only these steps (even if the file skips them)")
    parser.add_argument("--skip", type=_steps, default=(), metavar="STEP,...",
                        help="skip these steps")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="work folder ({out}); default: [pipeline] out in the file")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")


def _steps(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def run(args: argparse.Namespace) -> int:
    from edge_transfer.commands._pipeline import load_pipeline, run_pipeline

    pipeline = load_pipeline(args.pipeline, out=args.out)
    results = run_pipeline(pipeline, only=args.only, skip=args.skip, dry_run=args.dry_run)
    return next((r.exit_code for r in results if r.exit_code), 0)

"""``edge-transfer run PIPELINE.toml``: pretrain -> ... -> check from one config file."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run a pipeline file: pretrain, finetune, export, bundle, validate, "
                    "report, check",
        description="Run the steps of PIPELINE.toml in order. Each table is a step; its keys "
                    "are the long options of that command (shots = 10 is --shots 10).",
    )
    p.add_argument("pipeline", type=Path, metavar="PIPELINE.toml", help="the pipeline file")
    p.add_argument("--only", type=_steps, default=(), metavar="STEP,...",
                   help="run only these steps (even if the file skips them)")
    p.add_argument("--skip", type=_steps, default=(), metavar="STEP,...",
                   help="skip these steps")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="work folder ({out}); default: [pipeline] out in the file")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.set_defaults(handler=run)


def _steps(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def run(args: argparse.Namespace) -> int:
    from edge_transfer.commands._pipeline import load_pipeline, run_pipeline

    pipeline = load_pipeline(args.pipeline, out=args.out)
    results = run_pipeline(pipeline, only=args.only, skip=args.skip, dry_run=args.dry_run)
    return next((r.exit_code for r in results if r.exit_code), 0)

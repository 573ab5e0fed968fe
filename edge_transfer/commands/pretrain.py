"""``edge-transfer pretrain``: train a feature extractor on a source task."""

from __future__ import annotations

import argparse

from edge_transfer.commands._options import add_config_options, add_quiet, config_kwargs, verbosity
from edge_transfer.train.config import PretrainConfig

HELP = "train a feature extractor on a source task"
DESCRIPTION = ("Train a backbone with a temporary classifier on the SOURCE data and save "
               "RUN/extractor.keras (start finetune from it with --backbone RUN), "
               "RUN/source_head.keras (for finetune --source-data), preprocessing.json, run.json "
               "and metrics.json. Example: edge-transfer pretrain --data digits:0-4 --out runs/src")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, PretrainConfig)
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from edge_transfer.commands._warn import warn
    from edge_transfer.train.messages import health_line, summary_line
    from edge_transfer.train.transfer import pretrain

    out = pretrain(PretrainConfig(**config_kwargs(args, PretrainConfig), verbose=verbosity(args)))
    print(f"pretrain: {summary_line(out)}")
    warn(health_line(out, "the pretrained model"))
    return 0

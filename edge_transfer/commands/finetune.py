"""``edge-transfer finetune``: a new head on a frozen extractor, then low-LR fine-tuning."""

from __future__ import annotations

import argparse

from edge_transfer.commands._options import add_config_options, add_quiet, config_kwargs, verbosity
from edge_transfer.train.config import FinetuneConfig

HELP = "fine-tune a backbone on your (small) dataset"
DESCRIPTION = ("Stage 1 trains a new classifier on the frozen extractor; stage 2 unfreezes the "
               "top layers at a lower learning rate with BatchNorm in inference mode. Both stop "
               "early on validation loss and keep the best weights. Writes RUN/model.keras, "
               "labels.txt, preprocessing.json, history.json, run.json, metrics.json. "
               "Example: edge-transfer finetune --data digits:5-9 --backbone runs/src --shots 10 "
               "--out runs/target")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, FinetuneConfig, types={"unfreeze": _unfreeze})
    add_quiet(parser)


def _unfreeze(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of layers or 'all'")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from edge_transfer.commands._warn import warn
    from edge_transfer.train.messages import health_line, summary_line
    from edge_transfer.train.transfer import finetune

    cfg = FinetuneConfig(**config_kwargs(args, FinetuneConfig), verbose=verbosity(args))
    out = finetune(cfg)
    print(f"finetune: {summary_line(out)}")
    warn(health_line(out, "the fine-tuned model"))
    return 0

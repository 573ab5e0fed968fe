"""``edge-transfer finetune``: a new head on a frozen extractor, then low-LR fine-tuning."""

from __future__ import annotations

import argparse
from typing import Any

from edge_transfer.commands._training import add_common, common_kwargs


def _unfreeze(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of layers or 'all'")
    return int(text)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a backbone on your (small) dataset",
        description=(
            "Stage 1 trains a new classifier on the frozen extractor; stage 2 unfreezes the "
            "top layers at a lower learning rate with BatchNorm in inference mode. Both stop "
            "early on validation loss and keep the best weights. Writes RUN/model.keras, "
            "labels.txt, preprocessing.json, history.json, run.json, metrics.json. "
            "Example: edge-transfer finetune --data digits:5-9 --backbone runs/src --shots 10 "
            "--out runs/target"
        ),
    )
    add_common(parser, default_epochs=40)
    parser.add_argument("--finetune-epochs", type=int, default=40,
                        help="maximum epochs of stage 2; 0 keeps the extractor frozen "
                             "(default: 40)")
    parser.add_argument("--finetune-lr-factor", type=float, default=0.1,
                        help="stage 2 learning rate = --learning-rate x this (default: 0.1)")
    parser.add_argument("--unfreeze", type=_unfreeze, default=None, metavar="N|all",
                        help="stage 2 trains the top N weight layers of the extractor, or all "
                             "(default: all)")
    parser.add_argument("--l2sp", type=float, default=0.0, metavar="ALPHA",
                        help="L2-SP: add ALPHA x squared distance of the extractor's kernels "
                             "from their starting values to the loss, to keep source knowledge "
                             "(default: 0, off)")
    parser.add_argument("--source-data", metavar="SPEC",
                        help="also measure source-task test accuracy before and after "
                             "fine-tuning (the forgetting figure), with the pretrain run's "
                             "source head, or a linear probe trained on the frozen start")
    parser.add_argument("--baseline", choices=("scratch",),
                        help="scratch: also train the same architecture from random weights "
                             "on the same data and epoch budget -> scratch_test_accuracy")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edge_transfer.commands._warn import warn
    from edge_transfer.transfer import FinetuneConfig, finetune, health_line, summary_line

    cfg = FinetuneConfig(**common_kwargs(args), finetune_epochs=args.finetune_epochs,
                         finetune_lr_factor=args.finetune_lr_factor, unfreeze=args.unfreeze,
                         l2sp=args.l2sp, source_data=args.source_data, baseline=args.baseline)
    out = finetune(cfg)
    print(f"finetune: {summary_line(out)}")
    warn(health_line(out, "the fine-tuned model"))
    return 0

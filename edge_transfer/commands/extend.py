"""``edge-transfer extend``: add classes to a run's model, keeping the old ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_transfer.commands._options import add_config_options, add_quiet, config_kwargs, verbosity
from edge_transfer.train.incremental import ExtendConfig

HELP = "add new classes to a run's model, keeping the old classes (class-incremental)"
DESCRIPTION = ("The run's extractor stays frozen; one head over the old and the new classes. "
               "By default (--head auto) it is the linear discriminant (LDA) of the class "
               "means and the shared covariance of the features that the run kept "
               "(RUN/class_stats.npz: no image and no feature vector of one), which a step "
               "adds to exactly: no item is needed and nothing of those statistics is "
               "forgotten. --head softmax trains it instead on the new images' features plus "
               "the feature vectors the run kept of its classes (--memory per class, herding; "
               "RUN/memory.npz), with distillation from the old head and a class-balanced "
               "loss against the bias toward new classes. "
               "RUN2 is a run like finetune's (labels old then new; export, bundle, validate, "
               "report and check work on it) plus incremental.json: accuracy on all, old and "
               "new classes, the old classes before and after on the same test images, "
               "forgetting per class, the steps so far. Extend RUN2 again for a third step. "
               "Example: edge-transfer extend runs/a --data digits:5-9 --out runs/ab "
               "--baseline finetune,joint")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, metavar="RUN",
                        help="the run to extend (finetune's or extend's --out)")
    add_config_options(parser, ExtendConfig)
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from edge_transfer.train.incremental import extend, summary_line

    cfg = ExtendConfig(run=args.run, **config_kwargs(args, ExtendConfig),
                       verbose=verbosity(args))
    print(f"extend: {summary_line(extend(cfg))}")
    return 0

"""Options shared by ``pretrain`` and ``finetune`` (argparse only: no TensorFlow here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

BACKBONE_HELP = (
    "small-cnn (fast on a CPU, any input size), or any keras.applications model by a "
    "lower-case name (mobilenet_v2, mobilenet_v3_small, efficientnet_b0, efficientnet_v2_b0, "
    "convnext_tiny, regnetx_002, densenet121, resnet50_v2, ...; `edge-transfer backbones` "
    "lists them all); or the --out folder of a pretrain run (its extractor.keras); or a "
    ".keras file cut at --cut-layer"
)
DATA_HELP = (
    "digits[:A-B] (built-in handwritten digits, e.g. digits:5-9), an .npz with x, y "
    "[, class_names], or an image folder with one subfolder per class"
)


def add_common(parser: argparse.ArgumentParser, default_epochs: int) -> None:
    parser.add_argument("--data", required=True, metavar="SPEC", help=DATA_HELP)
    parser.add_argument("--out", required=True, type=Path, metavar="RUN",
                        help="run directory to write (created; files in it are replaced)")
    parser.add_argument("--backbone", default="small-cnn", metavar="NAME|RUN|FILE",
                        help=f"feature extractor: {BACKBONE_HELP} (default: small-cnn)")
    parser.add_argument("--weights", metavar="imagenet|none|PATH",
                        help="starting weights of a named backbone: imagenet (Keras' download "
                             "cache), none (random) or a weights file saved from the same "
                             "backbone (default: imagenet for keras.applications, none for "
                             "small-cnn)")
    parser.add_argument("--input-size", type=int, metavar="PX",
                        help="square input side in pixels (default: 224 for keras.applications,"
                             " the data's own size for small-cnn); images are resized to it")
    parser.add_argument("--width", type=float, default=1.0, metavar="ALPHA",
                        help="width multiplier (MobileNet alpha; small-cnn filters) "
                             "(default: 1.0)")
    parser.add_argument("--cut-layer", metavar="NAME",
                        help="with a .keras backbone file: the layer whose output is the "
                             "features (default: the layer before the last)")
    parser.add_argument("--unsafe-load", "--unsafe", dest="unsafe", action="store_true",
                        help="allow Lambda layers (arbitrary code) in a backbone file you trust "
                             "(--unsafe is an alias)")
    parser.add_argument("--epochs", type=int, default=default_epochs,
                        help=f"maximum epochs{' of the head stage' if default_epochs == 40 else ''}"
                             f"; early stopping usually ends sooner (default: {default_epochs})")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="global batch size (default: 32)")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="Adam learning rate (default: 0.001)")
    parser.add_argument("--patience", type=int, default=8,
                        help="epochs without a better validation loss before stopping; the best "
                             "weights are restored (default: 8)")
    parser.add_argument("--dropout", type=float, default=0.2,
                        help="dropout before the classifier (default: 0.2)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the split, the weights and the shuffling; the same seed "
                             "gives the same run on a CPU (default: 0)")
    parser.add_argument("--val-fraction", type=float, default=0.15,
                        help="fraction of each class for validation (default: 0.15)")
    parser.add_argument("--test-fraction", type=float, default=0.25,
                        help="fraction of each class held out for the test (default: 0.25)")
    parser.add_argument("--shots", type=int, metavar="K",
                        help="keep only K training images per class (the limited-data case); "
                             "validation and test keep their full size")
    parser.add_argument("--augment", action="store_true",
                        help="random shifts, zooms and small rotations of training images")
    parser.add_argument("--skip-bad-files", action="store_true",
                        help="skip unreadable images in a folder instead of stopping")
    parser.add_argument("--strategy", default="auto",
                        choices=("auto", "default", "mirrored", "multiworker"),
                        help="tf.distribute strategy: auto (mirrored over several GPUs, else "
                             "default), default (one device), mirrored (all GPUs, or all logical "
                             "CPUs), multiworker (processes described by TF_CONFIG; the chief "
                             "writes the run) (default: auto)")
    parser.add_argument("--precision", default="auto",
                        choices=("auto", "float32", "mixed_float16"),
                        help="auto: mixed_float16 on a GPU, float32 otherwise; the output layer "
                             "stays float32 (default: auto)")
    parser.add_argument("--cpu-devices", type=int, metavar="N",
                        help="split the CPU into N logical devices (to try --strategy mirrored "
                             "without GPUs)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress while training, only the summary line")


def common_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    return {name: getattr(args, name) for name in (
        "data", "out", "backbone", "weights", "input_size", "width", "cut_layer", "unsafe",
        "epochs", "batch_size", "learning_rate", "patience", "dropout", "seed",
        "val_fraction", "test_fraction", "shots", "augment", "skip_bad_files", "strategy",
        "precision", "cpu_devices")} | {"verbose": verbose}

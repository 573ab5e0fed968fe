"""``edge-transfer predict MODEL IMAGE...``: top-k labels of images with an exported model."""

from __future__ import annotations

import argparse

from edge_transfer.commands._options import add_json, write_json_output

HELP = "classify images with a .tflite / .onnx model (no TensorFlow)"
DESCRIPTION = ("Classify image files with a model exported by edge-transfer; the labels "
               "and preprocessing are read from inside the model file.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .tflite or .onnx file made by `edge-transfer export`")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files (.png, .jpg, .bmp, .gif), one or more")
    parser.add_argument("--top-k", type=int, default=1, help="labels per image (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="runtime threads")
    add_json(parser, "the labels instead of a table")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from edge_transfer.core.errors import ConfigError
    from edge_transfer.data.image_files import read_image
    from edge_transfer.runtime import EdgeModel

    if args.top_k < 1:
        raise ConfigError("--top-k must be at least 1")
    if args.json not in (None, "-") and Path(args.json).suffix in (".tflite", ".onnx"):
        # `predict --json MODEL IMAGE...`, --json's old form (a switch) before the model file
        args.images, args.model, args.json = [args.model, *args.images], args.json, "-"
    if not args.images:
        raise ConfigError("predict: give one or more image files after the model (see --help)")
    model = EdgeModel.load(args.model, threads=args.threads)
    pre = model.preprocessing
    images = np.stack([pre.to_pixels(read_image(Path(p), (pre.height, pre.width))[None])[0]
                       for p in args.images])
    top = model.predict(images, top_k=args.top_k).top()
    if args.json:
        write_json_output(args.json, [
            {"image": path, "top": [{"label": label, "probability": prob} for label, prob in row]}
            for path, row in zip(args.images, top, strict=True)])
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{Path(args.model).name} ({model.runtime})")
    table.add_column("Image")
    for k in range(len(top[0])):
        table.add_column(f"#{k + 1}")
    for path, row in zip(args.images, top, strict=True):
        table.add_row(path, *[f"{label} {prob:.3f}" for label, prob in row])
    Console(width=160).print(table)
    return 0

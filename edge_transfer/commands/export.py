"""``edge-transfer export RUN``: quantize and export a fine-tuned run, checking every file.

    edge-transfer export runs/target --formats tflite,onnx --precision fp32,fp16,dynamic,int8 \\
        --qat --prune 0.5 --io int8 --calibration-samples 200 --out runs/target/export

Exit codes: 0 every variant ok, 1 some variant failed (its reason is in the table and in
export.json), 2 bad input (one line naming the fix).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_FORMATS = "tflite,onnx"
DEFAULT_PRECISIONS = "fp32,int8"


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="quantize and export a run to TFLite / ONNX, checking every file",
        description="Export RUN's model to each format and precision, embed labels and "
                    "preprocessing in each file, and check each file against the Keras model "
                    "on the run's test split, pair by pair against the float model. Writes "
                    "export.json (with each file's per-sample predictions) beside the files.",
    )
    parser.add_argument("run", type=Path, metavar="RUN", help="run directory from finetune")
    parser.add_argument("--formats", default=DEFAULT_FORMATS,
                        help=f"comma-separated: tflite, onnx (default {DEFAULT_FORMATS})")
    parser.add_argument("--precision", default=DEFAULT_PRECISIONS,
                        help="comma-separated: fp32, fp16, dynamic, int8, int16x8 "
                             f"(default {DEFAULT_PRECISIONS}); each goes to the asked formats "
                             "that can produce it (onnx: fp32, dynamic, int8)")
    parser.add_argument("--qat", action="store_true",
                        help="add an int8 variant trained quantization-aware (short fine-tune)")
    parser.add_argument("--prune", type=float, metavar="SPARSITY",
                        help="add pruned variants of each precision at this sparsity, e.g. 0.5")
    parser.add_argument("--prune-precision", metavar="PRECISIONS",
                        help="comma-separated precisions to prune (default: every asked one)")
    parser.add_argument("--io", default="float", help="int8 model input/output type: "
                        "float, int8, uint8 (TFLite; default float)")
    parser.add_argument("--calibration-samples", type=int, default=100, metavar="N",
                        help="training samples to calibrate int8 ranges (default 100)")
    parser.add_argument("--calibration-method", default="minmax",
                        help="ONNX static int8 calibration: minmax, entropy, percentile")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--max-accuracy-drop", type=float, default=0.05, metavar="FRACTION",
                        help="a variant fails its check when its accuracy dropped by more "
                             "than this below the float model's, and significantly (see "
                             "--decide; default 0.05)")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="significance level of an accuracy drop (exact McNemar test on "
                             "the same samples; default 0.05)")
    parser.add_argument("--decide", choices=("significant", "point"), default="significant",
                        help="significant (default): fail a drop beyond the tolerance only "
                             "when it is significant at --alpha; point: on the point estimate "
                             "alone")
    parser.add_argument("--epochs", type=int, default=2,
                        help="fine-tune epochs for --qat and --prune (default 2)")
    parser.add_argument("--keep-float", metavar="auto|NAME[,NAME...]|OP_TYPE",
                        help="add an int8-mixed variant per format that keeps these Keras "
                             "layers or op types (TFLite CONV_2D, MUL...; ONNX Conv, Mul...) in "
                             "float; auto keeps the fewest of the layers `edge-transfer "
                             "diagnose` ranks worst, 1, 2, 3, 5, 8, 13... at a time, until "
                             "accuracy is within --max-accuracy-drop of float, in at most "
                             "--keep-float-conversions re-quantizations of one calibration")
    parser.add_argument("--keep-float-conversions", type=int, default=6, metavar="N",
                        help="--keep-float auto: at most N tries (default 6: up to 13 layers)")
    parser.add_argument("--diagnose", action="store_true",
                        help="also write diagnose.json and error-vs-depth plots for each "
                             "format's int8 (as `edge-transfer diagnose`)")
    parser.add_argument("--out", type=Path, help="output folder (default RUN/export)")
    parser.add_argument("--unsafe-load", "--unsafe", dest="unsafe_load", action="store_true",
                        help="allow Lambda layers (arbitrary code) in a run's model you trust")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edge_transfer.export import (
        ExportConfig,
        export_run,
        output_dir,
        result_notes,
        results_table,
    )
    from edge_transfer.runs import Run

    config = ExportConfig(
        formats=_names(args.formats), precisions=_names(args.precision), qat=args.qat,
        prune=args.prune, io=args.io,
        prune_precisions=_names(args.prune_precision) if args.prune_precision else None,
        calibration_samples=args.calibration_samples,
        calibration_method=args.calibration_method, opset=args.opset, out_dir=args.out,
        max_accuracy_drop=args.max_accuracy_drop, alpha=args.alpha, decide=args.decide,
        finetune_epochs=args.epochs,
        unsafe_load=args.unsafe_load,
        keep_float=_names(args.keep_float) if args.keep_float else None,
        keep_float_conversions=args.keep_float_conversions, diagnose=args.diagnose,
    )
    Run.open(args.run)            # bad input first, before TensorFlow is imported
    output_dir(args.run, config)
    stderr = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=stderr, transient=True) as progress:
        task = progress.add_task("export", total=None)

        def show(what: str, done: int, total: int) -> None:
            progress.update(task, description=f"exporting {what}", completed=done, total=total)

        result = export_run(args.run, config, progress=show)
    console = Console(width=160)
    console.print(results_table(result))
    from edge_transfer.commands._warn import warn

    for line in result_notes(result):
        warn(line)
    print(f"wrote {result.path}")
    failed = [a.name for a in result.artifacts if not a.ok]
    if failed:
        print(f"error: {len(failed)} variant(s) failed: {', '.join(failed)} "
              f"(reasons in {result.path})", file=sys.stderr)
        return 1
    return 0

"""``edge-transfer diagnose RUN``: which layers quantization breaks, ranked, with a reading.

    edge-transfer diagnose runs/target --format tflite --precision int8 --samples 64

Writes ``RUN/export/diagnose.json`` (one record per format and precision) and
``diagnose-<format>-<precision>.png`` (error against depth); ``report`` links them.
Exit codes: 0 measured, 2 bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "per-layer quantization error of a run, worst layers first"
DESCRIPTION = ("Quantize RUN's model and measure, layer by layer on validation images, "
               "the error each layer adds (local) and the error built up by its output "
               "(cumulative) against the float model. Prints the worst layers with a "
               "one-line reading, writes diagnose.json and a plot of error against depth. "
               "Then keep the worst layers in float with `export --keep-float auto` (or "
               "their names), or try `export --qat`.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edge_transfer.export.diagnose import ACCURACY_SAMPLES, MEASURABLE, DiagnoseConfig

    defaults = DiagnoseConfig()
    parser.add_argument("run", type=Path, metavar="RUN", help="run directory from finetune")
    parser.add_argument("--format", default=defaults.format, choices=sorted(MEASURABLE),
                        help=f"converter to diagnose (default {defaults.format})")
    parser.add_argument("--precision", default=defaults.precision,
                        help="int8 (TFLite full integer, ONNX static QDQ); int16x8 and dynamic "
                             f"are not measured per layer (default {defaults.precision})")
    parser.add_argument("--samples", type=int, default=defaults.samples, metavar="N",
                        help="validation images the per-layer errors are measured on (default "
                             f"{defaults.samples}); the accuracies use at most "
                             f"{ACCURACY_SAMPLES}")
    parser.add_argument("--calibration-samples", type=int,
                        default=defaults.calibration_samples, metavar="N",
                        help="training samples to calibrate int8 ranges "
                             f"(default {defaults.calibration_samples}, as export)")
    parser.add_argument("--top", type=int, default=defaults.top,
                        help=f"rows of the table (default {defaults.top})")
    parser.add_argument("--out", type=Path, help="output folder (default RUN/export)")
    parser.add_argument("--unsafe-load", action="store_true",
                        help="allow Lambda layers (arbitrary code) in a run's model you trust")
    parser.add_argument("--unsafe", dest="unsafe_load", action="store_true",
                        help=argparse.SUPPRESS)  # the old spelling, for one release


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edge_transfer.export.diagnose import DiagnoseConfig, diagnose_run, table
    from edge_transfer.train.runs import Run

    config = DiagnoseConfig(format=args.format, precision=args.precision, samples=args.samples,
                            calibration_samples=args.calibration_samples, top=args.top,
                            out=args.out, unsafe_load=args.unsafe_load)
    Run.open(args.run)   # bad input first, before TensorFlow is imported
    with Console(stderr=True).status(f"diagnosing {config.format} {config.precision}"):
        diagnosis = diagnose_run(args.run, config)
    Console(width=160).print(table(diagnosis, config.top))
    for sign in diagnosis.signs:
        print(f"warning: {sign}")
    out = Path(args.out) if args.out else Path(args.run) / "export"
    print(f"wrote {out / 'diagnose.json'} and {out / str(diagnosis.plot)}")
    return 0

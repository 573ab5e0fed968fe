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

import exporters
from edge_transfer.commands._options import add_config_options, config_kwargs
from edge_transfer.export.config import ExportConfig

HELP = "quantize and export a run to TFLite / ONNX, checking every file"
DESCRIPTION = ("Export RUN's model to each format and precision, embed labels and "
               "preprocessing in each file, and check each file against the Keras model "
               "on the run's test split, pair by pair against the float model. Writes "
               "export.json (with each file's per-sample predictions) beside the files.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    per_format = "; ".join(f"{name}: {', '.join(exporters.get(name).PRECISIONS)}"
                           for name in exporters.available())
    parser.epilog = f"Precisions per format: {per_format}."
    parser.add_argument("run", type=Path, metavar="RUN", help="run directory from finetune")
    add_config_options(parser, ExportConfig)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edge_transfer.export.config import output_dir
    from edge_transfer.export.pipeline import export_run, result_notes, results_table, timing_line
    from edge_transfer.train.runs import Run

    config = ExportConfig(**config_kwargs(args, ExportConfig))
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
    line = timing_line(result.timing)
    if line:
        print(line)
    from edge_transfer.commands._warn import warn
    from edge_transfer.train.health import training_warnings

    for line in [*training_warnings(args.run), *result_notes(result)]:
        warn(line)
    print(f"wrote {result.path}")
    failed = [a.name for a in result.artifacts if not a.ok]
    if failed:
        print(f"error: {len(failed)} variant(s) failed: {', '.join(failed)} "
              f"(reasons in {result.path})", file=sys.stderr)
        return 1
    return 0

"""``edge-transfer bench RUN|EXPORT|MODEL|BUNDLE``: the benchmark table of every artifact.

    edge-transfer bench runs/target --device emulated:arm64 --min-accuracy 0.95 --json b.json

Format, status, size MB, accuracy, ms per image (p50), FPS, one row per artifact, measured
by ``validate`` on the device (a run is bundled first: its sample is a stratified sample of
the test split, as ``bundle`` makes it), and the file to deploy on that device.
Exit 1 when an artifact failed or one is below ``--min-accuracy`` (named), 2 for bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from edge_transfer.commands._options import add_device_options, add_json, write_json_output

HELP = "benchmark table of every artifact on a device (size, accuracy, ms, FPS)"
DESCRIPTION = ("Run every artifact of a run, export folder, model file or bundle on a "
               "device (through validate) and print format, status, size, accuracy, "
               "ms per image and FPS; --min-accuracy fails the run.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="RUN|MODEL|BUNDLE",
                        help="run directory, export folder, .tflite/.onnx in an export "
                             "folder, or bundle (folder or .tar.gz)")
    add_device_options(parser, what="measure")
    parser.add_argument("--min-accuracy", type=float, default=None, metavar="X",
                        help="fail (exit 1) naming every artifact below this accuracy "
                             "(a fraction, e.g. 0.95)")
    add_json(parser, "the table (and the validation result)")


def run(args: argparse.Namespace) -> int:
    import sys

    from devices.bench import below_floor, bench
    from edge_transfer.core.errors import ConfigError

    if args.min_accuracy is not None and not 0 <= args.min_accuracy <= 1.5:
        raise ConfigError(f"--min-accuracy is a fraction (e.g. 0.95), got {args.min_accuracy}")
    table = bench(args.source, device=args.device, profile=args.profile,
                  threads=args.threads, data=args.data)
    below = below_floor(table, args.min_accuracy) if args.min_accuracy is not None else [
        f"{r['name']} (failed)" for r in table["rows"] if r["status"] == "failed"]
    table["min_accuracy"] = args.min_accuracy
    table["below_min_accuracy"] = below
    if args.json:
        write_json_output(args.json, table)
    print_table(table, stderr=args.json == "-")
    from edge_transfer.commands.validate import print_recommendation

    print_recommendation({"recommendation": table.get("recommendation"),
                          "artifacts": table["validation"]["artifacts"]},
                         stderr=args.json == "-")
    if below:
        floor = f"below --min-accuracy {args.min_accuracy}" if args.min_accuracy is not None \
            else "failed"
        print(f"bench failed: {floor}: {', '.join(below)}", file=sys.stderr)
        return 1
    return 0


def print_table(table: dict[str, Any], stderr: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    device = table["device"]
    samples = next((r["samples"] for r in table["rows"] if r["samples"]), 0)
    emulated = " (emulated: latency is not the device's)" if device.get("emulated") else ""
    out = Table(title=f"bench of {table['source']} on {device['name']} ({device['arch']}), "
                      f"{samples} images{emulated}")
    for column in ("Format", "Status", "Size (MB)", "Accuracy [95%]", "ms/img (p50)", "IQR ms",
                   "FPS", "FPS batched"):
        out.add_column(column, justify="left" if column in ("Format", "Status") else "right")
    for row in table["rows"]:
        ok = row["status"] == "ok"
        status = "✅" if ok else ("skip" if row["status"] == "skipped" else "❌")
        out.add_row(row["name"], status, f"{row['size_mb']:.3f}",
                    _accuracy(row["accuracy"], row["samples"]) if ok else "-",
                    f"{row['ms_per_image']:.3f}" if ok else "-",
                    f"{row['latency']['iqr']:.3f}" if ok and row.get("latency") else "-",
                    f"{row['fps']:.0f}" if ok else "-",
                    f"{row['batched_fps']:.0f}" if ok else "-")
    Console(width=160, stderr=stderr).print(out)


def _accuracy(accuracy: float, samples: int | None) -> str:
    """The accuracy with its 95% Wilson interval when the sample size is known.

    >>> _accuracy(0.95, 225)
    '0.9500 [0.915, 0.972]'
    """
    from edge_transfer.report.comparisons import interval_of

    interval = interval_of(accuracy, samples)
    bounds = "" if interval is None else f" [{interval.low:.3f}, {interval.high:.3f}]"
    return f"{accuracy:.4f}{bounds}"

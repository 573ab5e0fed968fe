"""``edge-transfer backbones``: the registry of backbones and their measured support."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_transfer.commands._options import add_json, write_json_output

HELP = "list the backbones and what each one supports"
DESCRIPTION = ("List every backbone --backbone accepts (small-cnn and each "
               "keras.applications model by a lower-case name) with its family, default "
               "and smallest input, width options and preprocessing, and the support "
               "matrix measured by benchmarks/backbones.py (trains from random weights "
               "above chance; TFLite and ONNX fp32 / int8 / QAT: ok with accuracy and "
               "seconds, or the reason it failed).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json(parser, "everything instead of a table")
    parser.add_argument("--results", type=Path, metavar="FILE",
                        help="a support matrix written by benchmarks/backbones.py "
                             "(default: the one installed with edge-transfer)")
    parser.add_argument("--family", metavar="NAME",
                        help="only this family (e.g. EfficientNetV2, RegNetX)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edge_transfer.core.errors import UserError
    from edge_transfer.report.support import COLUMNS, cells, load_matrix
    from edge_transfer.train import backbones

    specs = [backbones.get(name) for name in backbones.available()]
    if args.family:
        specs = [s for s in specs if s.family.lower() == args.family.lower()]
        if not specs:
            raise UserError(f"no family {args.family!r}; use one of "
                            f"{', '.join(backbones.families())}")
    matrix = load_matrix(args.results)
    measured = {row["name"]: row for row in matrix.get("models", [])}
    if args.json:
        write_json_output(args.json, [{**s.to_dict(), "measured": measured.get(s.name)}
                                      for s in specs])
        return 0
    table = Table(title="Backbones (--backbone NAME)")
    for column in ("Backbone", "Family", "Default", "Min", "Widths", "Preproc", "Params",
                   "Trains", *COLUMNS):
        table.add_column(column, overflow="fold")
    for spec in specs:
        row = measured.get(spec.name)
        text = cells(row) if row else {}
        params = row.get("params") if row else None
        table.add_row(spec.name, spec.family, str(spec.default_size or "data"),
                      str(spec.min_size),
                      "any" if spec.widths is None else " ".join(f"{w:g}" for w in spec.widths),
                      spec.preprocessing_mode or "0..1", f"{params / 1e6:.1f}M" if params else "-",
                      text.get("trains", "-"), *(text.get(c, "-") for c in COLUMNS))
    source = matrix.get("missing") or args.results or "edge_transfer/report/backbones.json"
    table.caption = (f"support measured at the smallest input, random weights, digits 0-4 "
                     f"(from {source}; '-' = not measured: run benchmarks/backbones.py)")
    Console(width=200).print(table)
    return 0

"""``edge-transfer devices``: the built-in device profiles as a table."""

from __future__ import annotations

import argparse

from edge_transfer.commands._options import add_json, write_json_output

HELP = "list the device profiles"
DESCRIPTION = ("List the built-in device profiles (devices/profiles/*.toml). Pass a name "
               "or your own .toml file to `edge-transfer validate --profile`.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json(parser, "the profiles instead of a table")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from devices import list_profiles, load_profile

    profiles = [load_profile(name) for name in list_profiles()]
    if args.json:
        write_json_output(args.json, [p.to_dict() for p in profiles])
        return 0
    table = Table(title="Device profiles")
    for column in ("Profile", "Arch", "Formats", "Precisions", "Threads", "RAM MB",
                   "Storage MB", "Latency ms", "Tolerance", "Stand-in"):
        table.add_column(column)
    for p in profiles:
        tolerance = "bundle" if p.accuracy_tolerance is None else f"{p.accuracy_tolerance:g}"
        table.add_row(p.name, p.arch, " ".join(p.formats), " ".join(p.precisions),
                      str(p.threads), f"{p.ram_mb:g}", f"{p.storage_mb:g}",
                      f"{p.latency_budget_ms:g}", tolerance, p.stand_in or "-")
    table.caption = ("validate/bench --device stand-in --profile NAME runs on the profile's "
                     "stand-in (emulated:arm64: `edge-transfer device setup emulated-arm64` "
                     "once)")
    Console(width=160).print(table)
    return 0

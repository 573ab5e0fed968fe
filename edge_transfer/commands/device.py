"""``edge-transfer device``: set up and inspect the emulated devices.

    edge-transfer device setup emulated-arm64 [--dir DIR] [--force] [--clients]
    edge-transfer device status [--dir DIR] [--json [OUT]]

Not run as a doctest (it needs root, debootstrap and qemu, and the network):

>>> from edge_transfer.cli import main
>>> main(["device", "setup", "emulated-arm64", "--dir", "/tmp/arm64"])      # doctest: +SKIP
"""

from __future__ import annotations

import argparse

from edge_transfer.commands._options import add_json, write_json_output

EMULATED = ("emulated-arm64",)


HELP = "set up and inspect emulated devices (an arm64 userland under qemu)"
DESCRIPTION = ("Build the emulated arm64 device once (Debian arm64 + qemu-user-static, "
               "needs root) and show its state.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                    parser_class=type(parser))
    setup = actions.add_parser(
        "setup", help="build (or reuse) an emulated device's userland",
        description="Build the Debian bookworm arm64 userland with the arm64 wheels of numpy, "
                    "ai-edge-litert, onnxruntime and edge-transfer; reused when up to date.")
    setup.add_argument("name", choices=EMULATED, help="the emulated device")
    setup.add_argument("--dir", help="cache folder (default: $EDGE_TRANSFER_CACHE/"
                                     "emulated-arm64 or ~/.cache/edge-transfer/emulated-arm64)")
    setup.add_argument("--force", action="store_true", help="rebuild everything")
    setup.add_argument("--clients", action="store_true",
                       help="also install the deploy clients (MediaPipe, OpenVINO Model API, "
                            "LiteRT, ONNX Runtime) in a venv of their own inside, for "
                            "`validate --device emulated:arm64 --client ...`")
    status = actions.add_parser("status", help="what the host has and what is set up")
    status.add_argument("--dir", help="cache folder of the emulated arm64 userland")
    add_json(status, "the status instead of a table")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from devices import emulated

    if args.action == "setup":
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        userland = emulated.setup_emulated_arm64(
            args.dir, progress=lambda line: console.print(f"[dim]•[/dim] {line}"),
            force=args.force)
        if args.clients:
            from rich.markup import escape

            from devices.emulated.clients import setup_clients

            setup_clients(userland,
                          progress=lambda line: console.print(f"[dim]•[/dim] {escape(line)}"))
        print(userland.path)
        return 0
    return _status(args)


def _status(args: argparse.Namespace) -> int:
    from devices import emulated

    userland = emulated.Userland.at(args.dir)
    info = userland.info() or {}
    problems = emulated.host_problems()
    versions: dict[str, str] = info.get("versions") or {}
    if args.json:
        write_json_output(args.json, {"emulated-arm64": {
            "dir": str(userland.path), "ready": userland.ready(), "host_problems": problems,
            "binfmt": emulated.binfmt_state(), "versions": versions or None,
            "seconds": info.get("seconds")}})
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="emulated devices")
    for column in ("device", "state", "folder", "runtimes", "host"):
        table.add_column(column)
    runtimes = ", ".join(f"{k} {versions[k]}" for k in ("ai-edge-litert", "onnxruntime")
                         if k in versions)
    table.add_row(
        "emulated:arm64",
        "ready" if userland.ready() else f"not set up: {userland.setup_hint()}",
        str(userland.path), runtimes or "-",
        "; ".join(problems) or f"ok (binfmt {emulated.binfmt_state()})")
    Console().print(table)
    return 0

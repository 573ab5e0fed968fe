"""The ``edge-transfer`` command line: one module per command under ``edge_transfer.commands``.

Each command module defines ``HELP`` (its line in ``edge-transfer --help``), ``DESCRIPTION``
(the top of its own ``--help``), ``add_arguments(parser)`` (its options, and an epilog where
the help names what a registry holds) and ``run(args) -> int``, which does the work and
imports heavy libraries (TensorFlow) only inside, so ``--help`` stays light.

Error contract: a :class:`~edge_transfer.core.errors.UserError` prints one line and exits 2;
any other failure exits 1 with a short hint, and the traceback only under ``--debug``;
SIGINT (Ctrl-C) or SIGTERM, wherever it lands, prints ``interrupted`` and exits 130 or 143
(see :mod:`edge_transfer.core.interrupts`).

Not run as a doctest (it prints the whole help, then exits):

>>> main(["devices", "--help"])                          # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from edge_transfer import __version__
from edge_transfer.core import interrupts
from edge_transfer.core.errors import ConfigError, EdgeTransferError, UserError, one_line

# Command modules, in the order `--help` lists them.
COMMANDS = (
    "pretrain",
    "finetune",
    "extend",
    "export",
    "diagnose",
    "bundle",
    "validate",
    "bench",
    "predict",
    "backbones",
    "devices",
    "device",
    "report",
    "check",
    "run",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    """argparse whose own complaints go through the one error contract (ConfigError)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edge-transfer",
        description=(
            "Transfer learning that ends on a device: pretrain a feature extractor, fine-tune it "
            "on your small dataset, quantize and export to TFLite / ONNX, and validate the "
            "result on the device it will run on."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for name in COMMANDS:
        command = importlib.import_module(f"edge_transfer.commands.{name}")
        sub = subparsers.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        with interrupts.handling_signals():
            args = build_parser().parse_args(argv)
            return int(args.handler(args) or 0)
    except KeyboardInterrupt as exc:   # interrupts.Interrupted: SIGINT 130, SIGTERM 143
        print("interrupted", file=sys.stderr)
        return exc.exit_code if isinstance(exc, interrupts.Interrupted) else 130
    except UserError as exc:
        print(f"error: {one_line(exc, limit=2000)}", file=sys.stderr)
        return exc.exit_code
    except EdgeTransferError as exc:
        print(f"error: {one_line(exc, limit=2000)}", file=sys.stderr)
        if debug:
            raise
        return exc.exit_code
    except Exception as exc:
        if debug:
            raise
        print(
            f"internal error: {type(exc).__name__}: {one_line(exc)}\n"
            "rerun with --debug for the traceback, and report it if it persists",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Command-line options: derived from the config dataclasses, and the groups commands share.

A config field is an option when its metadata has ``help``; everything else about the
option comes from the field, so the CLI never retypes a default, a choice or a type:

- the flag is ``--`` + the field name with dashes, or ``metadata["flag"]``;
- the default is the field's, shown in the help; a field without a default is required;
- ``bool`` is a switch, ``int``/``float``/``str``/``Path`` (or ``... | None``) take a value,
  ``tuple[str, ...]`` takes a comma-separated list;
- ``metadata["choices"]`` are enforced by the parser (where the config does not explain a bad
  value better itself) and ``metadata["names"]`` are only listed in the help;
- ``metadata["aliases"]``: old spellings, still accepted but hidden from ``--help`` (one
  release, then removed).

>>> import argparse
>>> from dataclasses import dataclass, field
>>> @dataclass(frozen=True)
... class Demo:
...     batch_size: int = field(default=32, metadata={"help": "global batch size"})
...     formats: tuple[str, ...] = field(default=("a", "b"), metadata={
...         "help": "comma-separated formats", "aliases": ("--format",)})
>>> parser = argparse.ArgumentParser()
>>> add_config_options(parser, Demo)
>>> args = parser.parse_args(["--format", "b", "--batch-size", "8"])
>>> Demo(**config_kwargs(args, Demo))
Demo(batch_size=8, formats=('b',))
>>> "--format " in parser.format_help()
False
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

Group = argparse.ArgumentParser | argparse._ArgumentGroup


def option_fields(config: type, *, exclude: Iterable[str] = ()) -> list[dataclasses.Field]:
    """The fields of ``config`` that are command-line options (their metadata has help)."""
    skip = set(exclude)
    return [f for f in dataclasses.fields(config)
            if "help" in f.metadata and f.name not in skip]


def flag(config: type, name: str) -> str:
    """The option that sets ``config``'s field ``name``, for messages.

    >>> from edge_transfer.export.pipeline import ExportConfig
    >>> flag(ExportConfig, "precisions")
    '--precision'
    """
    field = next(f for f in dataclasses.fields(config) if f.name == name)
    return str(field.metadata.get("flag", "--" + name.replace("_", "-")))


def add_config_options(
    parser: Group,
    config: type,
    *,
    exclude: Iterable[str] = (),
    types: Mapping[str, Callable[[str], Any]] | None = None,
) -> None:
    """Add an option per option field of ``config`` (see the module's docstring).

    ``types`` overrides the parser of a field's value (e.g. ``N|all``).
    """
    hints = typing.get_type_hints(config)
    for field in option_fields(config, exclude=exclude):
        meta = field.metadata
        kind, parse = _kind(hints[field.name])
        if types and field.name in types:
            parse = types[field.name]
        default = _default(field)
        option = meta.get("flag", "--" + field.name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": field.name}
        if kind == "switch":
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = parse
            kwargs["metavar"] = meta.get("metavar", option.lstrip("-").upper().replace("-", "_"))
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
                kwargs["metavar"] = "|".join(meta["choices"])
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        parser.add_argument(option, help=_help(meta, default, kind), **kwargs)
        for alias in meta.get("aliases", ()):
            parser.add_argument(alias, **{**kwargs, "help": argparse.SUPPRESS,
                                          "default": argparse.SUPPRESS, "required": False})


def config_kwargs(args: argparse.Namespace, config: type, *,
                  exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The values of ``config``'s option fields from parsed ``args``."""
    return {f.name: getattr(args, f.name) for f in option_fields(config, exclude=exclude)}


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names.

    >>> names("tflite, onnx,")
    ('tflite', 'onnx')
    """
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _kind(hint: Any) -> tuple[str, Callable[[str], Any]]:
    """("switch" | "value" | "list", the parser of one command-line value) of a type hint."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if hint is bool:
        return "switch", bool
    if typing.get_origin(hint) is tuple:
        return "list", names
    if hint in (int, float, str, Path):
        return "value", hint
    if typing.get_origin(hint) is typing.Literal:
        return "value", str
    raise TypeError(f"no command-line form for a field of type {hint!r}")


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _help(meta: Mapping[str, Any], default: Any, kind: str) -> str:
    text = str(meta["help"])
    listed = meta.get("names")  # enforced choices show in the metavar instead
    if listed:
        text += f"; one of: {', '.join(listed)}" if kind != "list" else \
            f"; of: {', '.join(listed)}"
    if kind != "switch" and default not in (dataclasses.MISSING, None) and \
            meta.get("show_default", True):
        shown = ",".join(default) if isinstance(default, tuple) else default
        text += f" (default: {shown})"
    return text.replace("%", "%%")


# ------------------------------------------------------------------ groups several share


def add_quiet(parser: Group) -> None:
    parser.add_argument("--quiet", action="store_true",
                        help="no progress while training, only the summary line")


def verbosity(args: argparse.Namespace) -> int:
    """The trainers' ``verbose`` from ``--quiet`` and whether stdout is a terminal."""
    return 0 if args.quiet else (1 if sys.stdout.isatty() else 2)


def add_device_options(parser: Group, *, what: str) -> None:
    """``--device``, ``--profile``, ``--threads`` and ``--data`` of validate and bench."""
    parser.add_argument("--device", default="local",
                        help="local (default, a child process per model), self (this "
                             "process), ssh://user@host[:port], emulated:arm64 (arm64 "
                             "runtimes under qemu: `edge-transfer device setup emulated-arm64` "
                             "first) or stand-in (the --profile's stand_in device)")
    parser.add_argument("--profile", default=None,
                        help="device profile name (`edge-transfer devices`) or .toml file; "
                             "what the device cannot run is skipped")
    parser.add_argument("--threads", type=int, default=None,
                        help="runtime threads (default: the profile's)")
    parser.add_argument("--data", default=None, metavar="SPEC",
                        help=f"data spec to {what} on instead of the bundle's sample")


def add_json(parser: Group, what: str) -> None:
    """``--json [OUT]``, the one meaning of --json: write ``what`` as JSON to OUT, or to
    stdout when OUT is ``-`` or left out (then the table, if any, goes to stderr)."""
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                        help=f"write {what} as JSON to OUT (- or nothing: stdout)")


def write_json_output(target: str, data: Any) -> None:
    """Write ``data`` where ``--json`` said: stdout for ``-``, else the file (atomically)."""
    import json

    if target == "-":
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    from edge_transfer.train.runs import write_json

    write_json(Path(target), data, parents=True)

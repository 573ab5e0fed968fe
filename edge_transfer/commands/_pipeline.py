"""``edge-transfer run PIPELINE.toml``: a team's whole recipe in one file, run step by step.

Each TOML table is one step, run in this fixed order whatever the file's order::

    pretrain -> finetune -> export -> bundle -> validate -> report -> check

A step's keys are exactly the long options of that command (``shots = 10`` is ``--shots 10``),
and its positional arguments by their name in ``--help`` (``run = "{out}/target"``). Lists
become comma-joined values (or several values where the option takes several), ``true``/
``false`` put a flag in or leave it out, and ``skip = true`` skips the step. ``[pipeline]``
holds ``out``, the work folder (``{out}`` in any value stands for it), and ``keep-going``
(go on after a step that exits 1, see :func:`run_pipeline`). Relative paths are taken
from the TOML file's folder: values of options that hold paths (typed ``Path``, or named
``--out``, ``--json``, ``run``, ...: see :func:`takes_path`), and any other value naming a file
or folder that exists there (``data = "photos"``; ``data = "digits:5-9"`` stays as it is).
An option given several times (``action="append"``) takes a list: one option per item.

The runner builds each step's argv and hands it to the CLI's own parser
(:func:`edge_transfer.cli.build_parser`), so a pipeline file means exactly what the same command
typed by hand means, and cannot drift from the CLI.

Not run as a doctest (it needs a pipeline file; tests/test_pipeline.py writes them):

>>> pipe = load_pipeline("pipeline.toml")                       # doctest: +SKIP
>>> [r.name for r in run_pipeline(pipe, only=("export", "report"), dry_run=True)]  # doctest: +SKIP
['export', 'report']
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from edge_transfer.core import interrupts
from edge_transfer.core.errors import EdgeTransferError, UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STEPS = ("pretrain", "finetune", "export", "bundle", "validate", "report", "check")
PIPELINE_TABLE = "pipeline"
PIPELINE_KEYS = ("out", "keep-going")
# Option names (argparse dest words) that always hold a path, even when not typed as a Path.
_PATH_WORDS = frozenset({"dir", "file", "path", "folder", "out", "json", "run", "bundle"})
Scalar = str | int | float | bool
Value = Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class Step:
    """One table of the pipeline file: a command name and its options as written."""

    name: str
    options: tuple[tuple[str, Value], ...] = ()
    skip: bool = False

    def get(self, key: str) -> Value | None:
        return dict(self.options).get(key)


@dataclass(frozen=True)
class Pipeline:
    """A parsed pipeline file: where it lives, its work folder, its steps in run order."""

    path: Path
    out: Path
    steps: tuple[Step, ...]
    keep_going: bool = False    # go on after a step that failed with exit code 1

    @property
    def folder(self) -> Path:
        return self.path.parent

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def expand(self, value: str, is_path: bool = False) -> str:
        """``{out}`` substituted; a relative path taken from the TOML file's folder."""
        text = value.replace("{out}", str(self.out))
        if not text or Path(text).is_absolute() or ":" in text:
            return text
        if is_path or (self.folder / text).exists():
            return str(self.folder / text)
        return text


@dataclass(frozen=True)
class StepResult:
    name: str
    argv: tuple[str, ...]
    exit_code: int
    seconds: float


def load_pipeline(path: str | Path, out: str | Path | None = None) -> Pipeline:
    """Parse and check a pipeline file (keys are checked against the CLI when it runs)."""
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"pipeline file {path} does not exist; give the path of a .toml file "
                        "(`edge-transfer demo` shows a working one)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}; fix that line") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read pipeline file {path}: {exc}; give a readable .toml file"
                        ) from exc
    unknown = [k for k in data if k not in (PIPELINE_TABLE, *STEPS)]
    if unknown:
        raise UserError(f"{path}: unknown step [{unknown[0]}]"
                        f"{_did_you_mean(unknown[0], STEPS)}; the steps are "
                        f"{', '.join(STEPS)} (and [{PIPELINE_TABLE}] for `out`)")
    settings = _table(data.get(PIPELINE_TABLE, {}), PIPELINE_TABLE, path)
    bad = [k for k in settings if k not in PIPELINE_KEYS]
    if bad:
        raise UserError(f"{path}: [{PIPELINE_TABLE}] has no key {bad[0]!r}; it takes "
                        f"{', '.join(PIPELINE_KEYS)}")
    steps = tuple(_step(name, _table(data[name], name, path), path)
                  for name in STEPS if name in data)
    if out is not None:
        work = Path(out).resolve()
    elif isinstance(settings.get("out"), str) and settings["out"]:
        work = (path.parent / settings["out"]).resolve()
    else:
        raise UserError(f"{path}: no work folder; set out = \"DIR\" in [{PIPELINE_TABLE}] "
                        "or pass --out DIR")
    keep_going = settings.get("keep-going", False)
    if not isinstance(keep_going, bool):
        raise UserError(f"{path}: [{PIPELINE_TABLE}] keep-going = {keep_going!r}; "
                        "write keep-going = true or false")
    return Pipeline(path, work, steps, keep_going)


def _table(value: Any, name: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{path}: {name} must be a table, written [{name}] on its own line")
    return value


def _step(name: str, table: dict[str, Any], path: Path) -> Step:
    options: list[tuple[str, Value]] = []
    skip = False
    for key, value in table.items():
        if key == "skip":
            if not isinstance(value, bool):
                raise UserError(f"{path}: [{name}] skip = {value!r}; write skip = true or false")
            skip = value
        elif isinstance(value, list) and all(_is_scalar(v) for v in value):
            options.append((key, tuple(value)))
        elif _is_scalar(value):
            options.append((key, value))
        else:
            raise UserError(f"{path}: [{name}] {key} = {value!r}: a value must be a string, "
                            "number, true/false or a list of those")
    return Step(name, tuple(options), skip)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


# ---------------------------------------------------------------- argv, through the CLI parser

def command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The sub-parser of one command of the CLI."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            if name in action.choices:
                return action.choices[name]
            raise UserError(f"edge-transfer has no command `{name}` in this install (it has "
                            f"{', '.join(action.choices)}); install the full package or skip "
                            "the step")
    raise UserError("the edge-transfer parser has no commands")  # pragma: no cover


def step_argv(pipeline: Pipeline, step: Step, parser: argparse.ArgumentParser) -> list[str]:
    """``[step.name, *args]`` for the CLI, each key checked against the command's options."""
    sub = command_parser(parser, step.name)
    positionals = {a.dest: a for a in sub._actions if not a.option_strings}
    options = {s[2:]: a for a in sub._actions for s in a.option_strings if s.startswith("--")}
    options.pop("help", None)
    head: list[str] = []
    tail: list[str] = []
    for key, value in step.options:
        if key in options:
            tail += _option_args(pipeline, step, key, value, options[key])
        elif key in positionals:
            head += _values(pipeline, value, positionals[key])
        else:
            known = [*positionals, *options]
            raise UserError(
                f"{pipeline.path}: [{step.name}] has no key {key!r}"
                f"{_did_you_mean(key, known)}; `edge-transfer {step.name}` takes "
                f"{', '.join(known)} (see `edge-transfer {step.name} --help`)")
    return [step.name, *head, *tail]


def _option_args(pipeline: Pipeline, step: Step, key: str, value: Value,
                 action: argparse.Action) -> list[str]:
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise UserError(f"{pipeline.path}: [{step.name}] {key} is a flag; "
                            f"write {key} = true or {key} = false")
        if value:
            return [f"--{key}"]
        negative = f"--no-{key}"
        return [negative] if negative in action.option_strings else []
    if isinstance(value, bool):
        raise UserError(f"{pipeline.path}: [{step.name}] {key} takes a value, not "
                        f"{str(value).lower()}; see `edge-transfer {step.name} --help`")
    if isinstance(action, argparse._AppendAction) and isinstance(value, tuple):
        return [arg for item in value for arg in (f"--{key}", *_values(pipeline, item, action))]
    return [f"--{key}", *_values(pipeline, value, action)]


def takes_path(action: argparse.Action) -> bool:
    """Whether an option names a file or folder: typed as a Path, or called so (``--out``)."""
    if isinstance(action.type, type) and issubclass(action.type, PurePath):
        return True
    if action.choices is not None:
        return False
    return bool(set(action.dest.lower().split("_")) & _PATH_WORDS)


def _values(pipeline: Pipeline, value: Value, action: argparse.Action) -> list[str]:
    is_path = takes_path(action)
    items = list(value) if isinstance(value, tuple) else [value]
    texts = [pipeline.expand(str(v), is_path) if isinstance(v, str) else _text(v) for v in items]
    several = action.nargs in ("+", "*", argparse.REMAINDER) or isinstance(action.nargs, int)
    return texts if several or not isinstance(value, tuple) else [",".join(texts)]


def _text(value: Scalar) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------- running

def select_steps(pipeline: Pipeline, only: Iterable[str] = (),
                 skip: Iterable[str] = ()) -> tuple[Step, ...]:
    """The steps to run: ``only`` (even if skipped in the file), minus ``skip``."""
    only, skip = tuple(only), tuple(skip)
    for name in (*only, *skip):
        if name not in STEPS:
            raise UserError(f"unknown step {name!r}{_did_you_mean(name, STEPS)}; the steps are "
                            f"{', '.join(STEPS)}")
    present = {s.name for s in pipeline.steps}
    absent = [n for n in only if n not in present]
    if absent:
        raise UserError(f"--only {absent[0]}: {pipeline.path} has no [{absent[0]}] table; "
                        "add one or leave it out")
    if only:
        return tuple(s for s in pipeline.steps if s.name in only and s.name not in skip)
    return tuple(s for s in pipeline.steps if not s.skip and s.name not in skip)


def run_pipeline(
    pipeline: Pipeline,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    dry_run: bool = False,
    parser: argparse.ArgumentParser | None = None,
    echo: Callable[[str], None] = print,
) -> list[StepResult]:
    """Run the selected steps in order through the CLI's parser; stop at the first failure.

    Every step's argv is built and parsed before the first one runs, so a typo in the last
    table fails before an hour of training. ``dry_run`` prints the commands only. With
    ``keep_going`` a step that fails with exit code 1 (e.g. an export with one failed variant,
    its record written) does not stop the later steps (the report then shows the failure);
    bad input (a UserError, exit code 2) always stops.
    """
    if parser is None:
        from edge_transfer.cli import build_parser

        parser = build_parser()
    steps = select_steps(pipeline, only, skip)
    if pipeline.out.exists() and not pipeline.out.is_dir():
        raise UserError(f"the work folder {pipeline.out} is a file; pass another --out")
    planned = [(step, step_argv(pipeline, step, parser)) for step in steps]
    parsed = [_parse(parser, pipeline, step, argv) for step, argv in planned]
    results: list[StepResult] = []
    for i, ((step, argv), args) in enumerate(zip(planned, parsed, strict=True), 1):
        echo(f"$ edge-transfer {shlex.join(argv)}")
        if dry_run:
            results.append(StepResult(step.name, tuple(argv), 0, 0.0))
            continue
        pipeline.out.mkdir(parents=True, exist_ok=True)
        result = _run_step(pipeline, step, argv, args, f"[{i}/{len(planned)}]", echo)
        results.append(result)
        if result.exit_code != 0 and not (pipeline.keep_going and result.exit_code == 1):
            break
    return results


def _run_step(pipeline: Pipeline, step: Step, argv: list[str], args: argparse.Namespace,
              counter: str, echo: Callable[[str], None]) -> StepResult:
    """Run one parsed step; its exit code and time, said in one line after ``counter``."""
    start = time.perf_counter()
    try:
        code = int(args.handler(args) or 0)
    except EdgeTransferError as exc:
        interrupts.check(exc)   # --keep-going never carries on past Ctrl-C
        if isinstance(exc, UserError) or not pipeline.keep_going:
            echo(f"{counter} {step.name} failed")
            raise
        echo(f"error: {exc}")
        code = exc.exit_code
    except Exception:
        echo(f"{counter} {step.name} failed")
        raise
    seconds = time.perf_counter() - start
    echo(f"{counter} {step.name}: {'done' if code == 0 else f'exit code {code}'} in "
         f"{seconds:.1f} s")
    return StepResult(step.name, tuple(argv), code, seconds)


def _parse(parser: argparse.ArgumentParser, pipeline: Pipeline, step: Step,
           argv: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except UserError as exc:
        raise UserError(f"{pipeline.path}: [{step.name}] {exc}") from exc


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

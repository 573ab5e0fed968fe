"""The typed-JSON framework every record of this package stands on.

:class:`Record` is a frozen dataclass converted to and from JSON by its fields' types
(``from_dict`` / ``to_dict``: records, tuples, dicts, optionals, literals, scalars and the
:class:`~edge_transfer.core.preprocessing.Preprocessing` record); the JSON keys are the field
names. :class:`FileRecord` is a record that is a whole file: its ``FILE_NAME`` and
``SCHEMA_VERSION`` once (given in the class line), ``load(path)`` reads and checks it,
``dump(path)`` writes it through :mod:`edge_transfer.core.atomic`. A missing, unreadable,
malformed or too-new file is a :class:`~edge_transfer.core.errors.UserError` subclass (the
record's ``ERROR``, or the caller's ``error=``) whose message names the fix; a value of the
wrong type is :class:`MalformedRecord` until ``load`` turns it into that error.

A field declared with ``field(default=None, metadata=OMIT_NONE)`` is left out of the JSON while
it is None; one declared with ``metadata=json_key("class")`` is written under that key (a
Python keyword). This module knows no schema: the schemas import it, never the reverse.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Pair(Record):
...     name: str
...     size: int = 0
>>> Pair.from_dict({"name": "a", "size": 3, "unknown": 1})
Pair(name='a', size=3)
>>> Pair.from_dict({"size": 3})
Traceback (most recent call last):
...
edge_transfer.core.records.base.MalformedRecord: name is missing
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, ParamSpec, TypeVar

from edge_transfer.core.errors import UserError, one_line
from edge_transfer.core.preprocessing import Preprocessing

OMIT_NONE = {"omit_none": True}
"""Field metadata: leave the key out of the JSON while the value is None."""


def json_key(key: str, **metadata: Any) -> dict[str, Any]:
    """Field metadata: the field's JSON key is ``key`` (for a key that is a Python keyword).

    >>> json_key("class")
    {'key': 'class'}
    """
    return {"key": key, **metadata}


def _key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


R = TypeVar("R", bound="Record")
F = TypeVar("F", bound="FileRecord")
P = ParamSpec("P")


class MalformedRecord(ValueError):
    """A value of the wrong type or a missing key; ``load`` turns it into the file's error."""


class Record:
    """A frozen dataclass converted to and from JSON by its fields' types."""

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "") -> R:
        """The record of a JSON object; unknown keys are ignored, missing ones take their
        defaults (a missing key without a default is :class:`MalformedRecord`)."""
        if not isinstance(data, Mapping):
            raise MalformedRecord(f"{where or cls.__name__}: expected an object, "
                                  f"got {_short(data)}")
        cls._check_dict(data)
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if not f.init:
                continue
            name = _key(f)
            key = f"{where}.{name}" if where else name
            if name in data:
                values[f.name] = _convert(hints[f.name], data[name], key)
            elif (f.default is dataclasses.MISSING
                  and f.default_factory is dataclasses.MISSING):
                raise MalformedRecord(f"{key} is missing")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise MalformedRecord(f"{where or cls.__name__}: {one_line(exc)}") from exc

    @classmethod
    def _check_dict(cls, data: Mapping[str, Any]) -> None:
        """Checks of the whole object before its fields are read (none by default)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (plain dicts, lists, numbers, strings, None)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[_key(f)] = _plain(value)
        return out


def as_dict(make: Callable[P, Record]) -> Callable[P, dict[str, Any]]:
    """``make`` returning its record's JSON object instead: the dict-returning API of a
    function whose typed version returns a record (``validate_bundle = as_dict(validate)``)."""
    @functools.wraps(make)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        return make(*args, **kwargs).to_dict()

    wrapper.__doc__ = (f"{make.__name__}(...) as its record's JSON object (a dict).\n\n"
                       f"{make.__doc__ or ''}")
    return wrapper


class FileRecord(Record):
    """A record that is a whole file: ``schema_version`` is written and checked here.

    A subclass names its file in the class line: ``class BenchTable(FileRecord, file="bench.json",
    version=1, error=DeviceError, make="how the user writes it again")``; a file that
    existed before its record adds ``unversioned_is_current=True`` (see below)."""

    FILE_NAME: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int]
    ERROR: ClassVar[type[UserError]] = UserError
    MAKE: ClassVar[str] = "write it again"   # how the user makes this file again
    # True for files that existed before their record: one without ``schema_version``
    # (written by an older release) is read as this version.
    UNVERSIONED_IS_CURRENT: ClassVar[bool] = False

    def __init_subclass__(cls, *, file: str | None = None, version: int | None = None,
                          error: type[UserError] | None = None, make: str | None = None,
                          unversioned_is_current: bool | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        given = {"FILE_NAME": file, "SCHEMA_VERSION": version, "ERROR": error, "MAKE": make,
                 "UNVERSIONED_IS_CURRENT": unversioned_is_current}
        for name, value in given.items():
            if value is not None:
                setattr(cls, name, value)

    @classmethod
    def _check_dict(cls, data: Mapping[str, Any]) -> None:
        if "schema_version" in data or not cls.UNVERSIONED_IS_CURRENT:
            _check_version(cls, data.get("schema_version"))

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.SCHEMA_VERSION, **super().to_dict()}

    @classmethod
    def load(cls: type[F], path: str | Path, *, error: type[UserError] | None = None,
             fix: str | None = None, missing: str | None = None) -> F:
        """Read and check ``path`` (a file, or a folder holding ``FILE_NAME``).

        ``error`` is the UserError subclass to raise (default the record's ``ERROR``),
        ``fix`` what the message tells the user to do (default the record's ``MAKE``),
        ``missing`` what it tells them when there is no such file (default ``fix``).
        """
        path = Path(path)
        if path.is_dir():
            path = path / cls.FILE_NAME
        raise_ = error or cls.ERROR
        fix = fix or cls.MAKE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise raise_(f"{path} is missing (it does not exist); {missing or fix}") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise raise_(f"cannot read {path} ({one_line(exc)}); {fix}") from exc
        if not isinstance(data, dict):
            raise raise_(f"{path} holds no JSON object; {fix}")
        try:
            return cls.from_dict(data)
        except _TooNew as exc:
            raise raise_(f"{path} has {exc}: upgrade edge-transfer (pip install -U "
                         f"edge-transfer) to read it, or {fix}") from exc
        except _OtherVersion as exc:
            raise raise_(f"{path} has {exc}; {fix}") from exc
        except (MalformedRecord, UserError) as exc:
            raise raise_(f"{path} is malformed ({one_line(exc)}); {fix}") from exc

    def dump(self, path: str | Path, parents: bool = False) -> Path:
        """Write the record atomically to ``path`` (a file, or a folder for ``FILE_NAME``)."""
        from edge_transfer.core.atomic import write_text_atomic

        path = Path(path)
        if path.is_dir():
            path = path / self.FILE_NAME
        write_text_atomic(path, self.to_json(), parents=parents)
        return path

    def to_json(self) -> str:
        """The file's text: indented, keys sorted, one trailing newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_json_default) + "\n"


class _TooNew(MalformedRecord):
    pass


class _OtherVersion(MalformedRecord):
    pass


def _check_version(cls: type[FileRecord], version: Any) -> None:
    reads = f"this edge-transfer reads {cls.SCHEMA_VERSION}"
    if isinstance(version, int) and not isinstance(version, bool):
        if version > cls.SCHEMA_VERSION:
            raise _TooNew(f"schema_version {version} ({reads}, a newer edge-transfer wrote it)")
        if version == cls.SCHEMA_VERSION:
            return
    raise _OtherVersion(f"schema_version {version!r} ({reads})")


def _hints(cls: type) -> dict[str, Any]:
    cached = _HINTS.get(cls)
    if cached is None:
        cached = _HINTS[cls] = typing.get_type_hints(cls)
    return cached


_HINTS: dict[type, dict[str, Any]] = {}


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` from JSON as type ``tp`` (records, tuples, dicts, optionals, scalars)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _union(tp, value, where)
    if origin is Literal:
        return _literal(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value, where)
    if tp is Preprocessing:
        return _preprocessing(value, where)
    if origin is tuple:
        return _tuple(tp, value, where)
    if origin in (dict, Mapping) or tp is dict:
        return _dict(tp, value, where)
    return _scalar(tp, value, where)


def _union(tp: Any, value: Any, where: str) -> Any:
    """The first of the union's types that converts ``value`` (None where it is allowed);
    else the first type's error."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _convert(arg, value, where)
        except MalformedRecord as exc:
            errors.append(exc)
    raise errors[0]


def _literal(tp: Any, value: Any, where: str) -> Any:
    if value in typing.get_args(tp):
        return value
    raise MalformedRecord(f"{where}: expected one of {typing.get_args(tp)}, "
                          f"got {_short(value)}")


def _preprocessing(value: Any, where: str) -> Preprocessing:
    if not isinstance(value, Mapping):
        raise MalformedRecord(f"{where}: expected an object, got {_short(value)}")
    try:
        return Preprocessing.from_dict(dict(value))
    except UserError as exc:
        raise MalformedRecord(f"{where}: {one_line(exc, 200)}") from exc


def _tuple(tp: Any, value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise MalformedRecord(f"{where}: expected a list, got {_short(value)}")
    item = typing.get_args(tp)[0]
    return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))


def _dict(tp: Any, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedRecord(f"{where}: expected an object, got {_short(value)}")
    args = typing.get_args(tp)
    item_type = args[1] if args else Any
    return {str(k): _convert(item_type, v, f"{where}.{k}") for k, v in value.items()}


def _scalar(tp: Any, value: Any, where: str) -> Any:
    """A float (an int is widened), an int, a str or a bool: no other type converts."""
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (str, bool):
        if isinstance(value, tp):
            return value
    else:
        raise TypeError(f"records cannot convert {tp!r} ({where})")  # a bug in a record
    raise MalformedRecord(f"{where}: expected {tp.__name__}, got {_short(value)}")


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Preprocessing):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return _json_default(value) if not isinstance(value, str | int | float | bool) and \
        value is not None else value


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists, paths as strings."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

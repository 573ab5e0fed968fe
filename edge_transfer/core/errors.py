"""The error types of edge-transfer, in one small tree.

    EdgeTransferError        anything this tool raises on purpose (exit code 1)
    └── UserError            input the user can fix: the CLI prints one line, exit code 2
        ├── ConfigError      an option or config value that is unknown, out of range or
        │                    conflicts with another (every config checks on construction)
        ├── DataError        datasets, images, .npz files, class selections, splits
        ├── ModelError       model files, backbones, run directories
        ├── ExportError      a format or precision that cannot be produced as asked
        │   ├── UnsupportedExportError  unknown format/precision/io, or one a format cannot do
        │   └── ConversionError         a converter failed (names the op or layer)
        ├── BundleError      deploy bundles: manifest, sha256, archive entries
        ├── BenchSourceError what `bench` was given is no run, export, model file or bundle
        └── DeviceError      device profiles, SSH and emulated devices

Every message names the problem and how to fix it:

>>> raise DataError("digits:7-3 is a reversed range; write digits:3-7")
Traceback (most recent call last):
...
edge_transfer.core.errors.DataError: digits:7-3 is a reversed range; write digits:3-7
"""

from __future__ import annotations


class EdgeTransferError(Exception):
    """Base class of every error this tool raises on purpose."""

    exit_code = 1


class UserError(EdgeTransferError):
    """Bad input that the user can fix; the CLI prints the message alone and exits 2."""

    exit_code = 2


class ConfigError(UserError):
    """An option or config value that is unknown, out of range or conflicts with another."""


class DataError(UserError):
    """A dataset, image, .npz file, class selection or split that cannot be used."""


class ModelError(UserError):
    """A model file, backbone or run directory that cannot be used."""


class ExportError(UserError):
    """A format, precision or option that cannot be produced as asked."""


class BundleError(UserError):
    """A deploy bundle that is malformed, tampered with or unsafe."""


class BenchSourceError(UserError):
    """What ``bench`` was given is not a run, an export folder, a model file or a bundle."""


class DeviceError(UserError):
    """A device profile, or a device that cannot be reached or used."""


class UnsupportedExportError(ExportError):
    """A format, precision or I/O type that is unknown, or that a format cannot produce."""


class ConversionError(ExportError):
    """A converter (TFLiteConverter, tf2onnx, ONNX Runtime quantization, tfmot) failed.

    The message names the op or layer it failed on where the converter says which.
    """


def one_line(error: object, limit: int = 500, *, first: bool = False,
             prefer: tuple[str, ...] = ()) -> str:
    """A library's message (often several lines) as one line for ours, at most ``limit`` chars.

    All lines are joined; ``first=True`` keeps only the headline: the first line that
    mentions one of ``prefer`` (case-insensitive), else the first line. An exception
    without a message is named by its type.

    >>> one_line(ValueError("Tensor 7 is invalid.\\n  at subgraph 0\\n"))
    'Tensor 7 is invalid. at subgraph 0'
    >>> one_line(RuntimeError("converting...\\nerror: op X is not supported\\n"), first=True,
    ...          prefer=("error",))
    'error: op X is not supported'
    >>> one_line(KeyError())
    'KeyError'
    """
    lines = [" ".join(line.split()) for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    if first:
        wanted = [ln for ln in lines if any(w in ln.lower() for w in prefer)]
        lines = (wanted or lines)[:1]
    text = " ".join(lines)
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

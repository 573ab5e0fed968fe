"""Turn a converter's exception into one line that names the op or layer it failed on.

>>> str(conversion_failure("tflite-int8", RuntimeError("error: 'tf.Svd' op is not supported")))
"tflite-int8 conversion failed on op tf.Svd: error: 'tf.Svd' op is not supported"
"""

from __future__ import annotations

import re

from edge_transfer.core import interrupts
from edge_transfer.core.errors import ConversionError, ExportError, one_line

_OP_PATTERNS = (
    re.compile(r"'((?:tf|tfl|stablehlo|mhlo)\.[A-Za-z0-9_]+)' op"),   # MLIR converter
    re.compile(r"Unsupported ops: Counter\(\{'([A-Za-z0-9_]+)'"),     # tf2onnx
    re.compile(r"(?:op_type|Op type|node)[:= ]+'?([A-Za-z0-9_/]+)"),  # onnx / onnxruntime
    re.compile(r"[Ll]ayer[: ]+'?([A-Za-z0-9_./]+)"),                  # keras / tfmot
)


def failing_op(message: str) -> str | None:
    """The first op or layer name a converter message mentions, if any."""
    for pattern in _OP_PATTERNS:
        match = pattern.search(message)
        if match:
            return match.group(1)
    return None


def conversion_failure(variant: str, exc: BaseException) -> ExportError:
    """A :class:`ConversionError` for ``variant`` naming the op or layer where known.

    If SIGINT/SIGTERM arrived meanwhile, raises :class:`~edge_transfer.core.interrupts.Interrupted`
    instead: whatever the converter made of the signal is an interrupt, not a failure."""
    interrupts.check(exc)
    if isinstance(exc, ExportError):
        return exc
    message = str(exc) or type(exc).__name__
    op = failing_op(message)
    where = f" on op {op}" if op else ""
    headline = one_line(message, 300, first=True, prefer=("error", "not supported"))
    return ConversionError(f"{variant} conversion failed{where}: {headline}")

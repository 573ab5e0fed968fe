"""The one place that chooses Keras 2 (``tf_keras``) and imports TensorFlow.

tensorflow-model-optimization, ``TFLiteConverter.from_keras_model`` and tf2onnx need
Keras 2 models; Keras 3 breaks all three. Every training-side module gets TensorFlow and
Keras from :func:`load`, never by importing them itself.

>>> tf, keras = load()
>>> keras.__name__
'tf_keras'
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from typing import Any


@cache
def load() -> tuple[Any, Any]:
    """Import TensorFlow with legacy Keras selected; return ``(tf, tf_keras)``."""
    if "tensorflow" not in __import__("sys").modules:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with quiet_native_stderr():
            import tensorflow as tf
            import tf_keras as keras
    except ImportError as exc:
        from edge_transfer.core.errors import UserError

        raise UserError(
            "training and export need the workstation install: "
            'pip install "edge-transfer[train]"'
        ) from exc
    return tf, keras


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide what native code writes to file descriptor 2 meanwhile (TensorFlow's absl
    start-up lines ignore TF_CPP_MIN_LOG_LEVEL); replay it if the block raises.

    ``EDGE_TRANSFER_NATIVE_LOGS=1`` leaves stderr alone.
    """
    if os.environ.get("EDGE_TRANSFER_NATIVE_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (e.g. a captured stream)
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)

"""The one place that chooses Keras 2 (``tf_keras``) and imports TensorFlow.

tensorflow-model-optimization, ``TFLiteConverter.from_keras_model`` and tf2onnx need
Keras 2 models; Keras 3 breaks all three. Every training-side module gets TensorFlow and
Keras from :func:`load`, never by importing them itself.

>>> tf, keras = load()
>>> keras.__name__
'tf_keras'
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any


@cache
def load() -> tuple[Any, Any]:
    """Import TensorFlow with legacy Keras selected; return ``(tf, tf_keras)``."""
    if "tensorflow" not in __import__("sys").modules:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tf_keras as keras
    except ImportError as exc:
        from edge_transfer.errors import UserError

        raise UserError(
            "training and export need the workstation install: "
            'pip install "edge-transfer[train]"'
        ) from exc
    return tf, keras

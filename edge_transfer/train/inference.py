"""A Keras model's outputs on arrays or on a split, eagerly and locally (no distribution, no
collectives): what training's evaluation, ``extend`` and ``diagnose`` read.

The training modules call these through the module (``inference.predict_split(...)``), so
that one patch of this module sees every read (tests/test_transfer.py counts them).

>>> import numpy as np
>>> predict(lambda x, training: x * 2, np.ones((3, 2)), batch_size=2).tolist()
[[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.data.dataset import Dataset


def predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs in batches, eagerly and locally (no distribution, no collectives)."""
    outputs = [np.asarray(model(x[i:i + batch_size], training=False))
               for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0,))


def predict_split(model: Any, split: Dataset, pre: Preprocessing,
                  batch_size: int = 256) -> np.ndarray:
    """Model outputs on a split, read through its stream (decoded in parallel, prefetched),
    eagerly and locally."""
    from edge_transfer.data.tfdata import Batching, from_dataset, reading

    call = _inference(model, pre)
    with reading():
        outputs = [np.asarray(call(x)) for x, _ in from_dataset(split, pre, Batching(batch_size))]
    return np.concatenate(outputs) if outputs else np.zeros((0,))


_INFERENCE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _inference(model: Any, pre: Preprocessing) -> Any:
    """``model(x, training=False)`` as one traced graph per model (any batch size): several
    times faster than eager calls on a deep backbone; still local (no strategy)."""
    if model not in _INFERENCE:
        from edge_transfer.core.keras import load

        tf, _ = load()
        spec = tf.TensorSpec((None, *pre.input_shape), tf.float32)
        ref = weakref.ref(model)  # the graph must not keep the model alive

        def call(x: Any) -> Any:
            live = ref()
            assert live is not None
            return live(x, training=False)

        _INFERENCE[model] = tf.function(call, input_signature=[spec])
    return _INFERENCE[model]

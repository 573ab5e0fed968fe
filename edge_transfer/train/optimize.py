"""Keras-side model optimization before export: quantization-aware training and pruning.

Both start from a copy of the model (tfmot wraps the layers it is given, so the original
would otherwise be trained too), fine-tune briefly on the run's training split, and return
a new tf_keras model ready for any exporter.

Not run as a doctest (it trains the model again; the slow export tests run it):

>>> qat = quantization_aware(model, x, y, epochs=2)                     # doctest: +SKIP
>>> pruned = prune(model, x, y, sparsity=0.5, epochs=2)                 # doctest: +SKIP
>>> round(pruned.sparsity, 2)                                           # doctest: +SKIP
0.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_transfer.core import interrupts
from edge_transfer.core.errors import ConversionError, one_line
from edge_transfer.core.keras import load

BATCH_SIZE = 32


def copy_model(model: Any) -> Any:
    """A new model with the same architecture and weights (Sequential or functional)."""
    _, keras = load()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def unquantizable_layer(model: Any) -> str | None:
    """The first layer tfmot's default int8 QAT cannot handle, as ``name (Class)``.

    BatchNormalization is left out: tfmot folds it into the preceding convolution.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_module,
    )

    _, keras = load()
    registry = registry_module.Default8BitQuantizeRegistry()
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer | keras.layers.BatchNormalization):
            continue
        if isinstance(layer, keras.Model):
            return (f"{layer.name} ({type(layer).__name__}: a model nested as a layer; "
                    "QAT needs a flat model)")
        if not registry.supports(layer):
            return f"{layer.name} ({type(layer).__name__})"
    return None


def quantization_aware(model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int = 2,
                       learning_rate: float = 1e-4, seed: int = 0,
                       notes: list[str] | None = None) -> Any:
    """tfmot ``quantize_model`` on a copy of ``model``, fine-tuned for ``epochs``.

    Layers tfmot refuses (Rescaling, Normalization, Multiply, hard-swish's and residual
    sums' TFOpLambda, a BatchNormalization after no convolution) get output-only quantize
    configs or are rewritten (:mod:`edge_transfer.train.qat_layers`); a layer quantization still
    fails on stays float. All are named in ``notes``. Raises ConversionError naming the
    layer when QAT cannot be applied.
    """

    from edge_transfer.train import qat_layers
    from edge_transfer.train.models import custom_objects

    _, keras = load()
    # tfmot rebuilds the model from its config: keras.applications' unregistered layers
    # (ConvNeXt's LayerScale, ...) must be known by name, or Keras leaves a str in their place
    with keras.utils.custom_object_scope(custom_objects()):
        qat, found = _quantize(model)
    if notes is not None:
        notes.extend(found)
    # Few-shot fine-tunes run too few steps for tfmot's range averages to leave [-6, 6].
    qat_layers.init_ranges(qat, model, x[:256])
    keras.utils.set_random_seed(seed)
    qat.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                metrics=["accuracy"])
    _fit(qat, x, y, epochs)
    return qat


def _quantize(model: Any) -> tuple[Any, tuple[str, ...]]:
    """tfmot's ``quantize_model``, else the layer-by-layer annotation of
    :mod:`edge_transfer.train.qat_layers`; the layers it left float."""
    from edge_transfer.train import qat_layers, qat_scheme

    try:
        return qat_scheme.quantize_model(copy_model(model)), ()
    except Exception as first:
        interrupts.check(first)
    try:
        return qat_layers.annotate_and_apply(copy_model(model))
    except ConversionError:
        raise   # names the layer that failed
    except Exception as exc:
        interrupts.check(exc)
        raise ConversionError(
            f"QAT cannot quantize this model: {one_line(exc, 200, first=True)}; export "
            "--keep-float auto instead (int8 with the worst layers in float)") from exc


@dataclass(frozen=True, eq=False)
class Pruned:
    model: Any
    sparsity: float   # reached: the fraction of zero weights in the pruned kernels


def prune(model: Any, x: np.ndarray, y: np.ndarray, *, sparsity: float, epochs: int = 2,
          learning_rate: float = 1e-4, seed: int = 0) -> Pruned:
    """``prune_low_magnitude`` to ``sparsity`` over the steps really run, then ``strip_pruning``.

    The polynomial schedule is set to the steps really run (tfmot's default
    ``frequency=100`` would prune nothing in a short fine-tune), halfway through it.
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude,
    )

    _, keras = load()
    steps = epochs * math.ceil(len(y) / BATCH_SIZE)
    # Reach the target over the first half of the steps; the second half lets the weights
    # and BatchNormalization statistics recover from the last mask update.
    frequency = max(1, steps // 20)
    end_step = ((steps // 2) // frequency) * frequency
    if end_step < 1:
        raise ConversionError(
            f"pruning needs at least 2 training steps, the training split gives {steps}; "
            "use more training data or more epochs"
        )
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0, end_step=end_step,
        frequency=frequency,
    )
    try:
        wrapped = tfmot.sparsity.keras.prune_low_magnitude(copy_model(model),
                                                           pruning_schedule=schedule)
    except Exception as exc:
        interrupts.check(exc)
        raise ConversionError(f"pruning failed: {one_line(exc, 300, first=True)}") from exc
    keras.utils.set_random_seed(seed)
    wrapped.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    _fit(wrapped, x, y, epochs, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    kernels = [weight.numpy() for layer in wrapped.layers
               if isinstance(layer, PruneLowMagnitude)
               for weight, _mask, _threshold in layer.pruning_vars]
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    total = sum(k.size for k in kernels)
    reached = float(sum(int(np.sum(k == 0)) for k in kernels) / total) if total else 0.0
    if reached < sparsity - 0.01:
        raise ConversionError(
            f"pruning reached sparsity {reached:.3f}, not the asked {sparsity}; "
            "fine-tune longer (more epochs)"
        )
    return Pruned(stripped, reached)


def _fit(model: Any, x: Any, y: np.ndarray, epochs: int, callbacks: list[Any] | None = None
         ) -> None:
    """Train on arrays (``x`` float input), or on a stream (``x`` a batched tf.data dataset
    of BATCH_SIZE batches, one pass an epoch; ``y`` then only gives the count)."""
    if isinstance(x, np.ndarray):
        model.fit(x, y, epochs=epochs, batch_size=BATCH_SIZE, verbose=0, callbacks=callbacks)
    else:
        model.fit(x, epochs=epochs, verbose=0, callbacks=callbacks)

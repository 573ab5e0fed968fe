"""QAT on the layers tfmot's default int8 scheme refuses (EfficientNet, MobileNetV3).

tfmot's ``quantize_model`` refuses ``Rescaling``/``Normalization`` (EfficientNet's and
MobileNetV3's preprocessing), the ``Multiply`` of squeeze-excite and hard-swish, and the
``TFOpLambda`` layers (``x + 3``, ``x * (1/6)``) Keras builds hard-swish/hard-sigmoid from.
:func:`annotate_and_apply` rewrites those ``TFOpLambda`` layers whose other operand is a
constant into :class:`ConstOp` layers, annotates every layer tfmot supports with its own
config and the rest with an output-only ``QuantizeConfig`` (their outputs are fake-quantized,
as int8 TFLite and ONNX run them; they have no weights to quantize), and applies
quantization. What it could not take is named in the returned notes.

The output quantizer is not optional. Without a fake-quant node after such a layer, the TFLite
converter folds a constant ``Mul``/``Add`` (EfficientNet's ``Rescaling(1/255)``) into the next
convolution's float weights but quantizes them with the ranges QAT learned for the unfolded
weights: on raw 0-255 input every weight of the stem rounds to 0 and the model is at chance.

>>> qat, notes = annotate_and_apply(model)                               # doctest: +SKIP
>>> notes                                                                # doctest: +SKIP
('QAT quantizes only the output of 3 layer(s) tfmot has no int8 config for: rescaling ...',)
"""

from __future__ import annotations

from functools import cache
from typing import Any

from edge_transfer._keras import load

# TFOpLambda symbols (tf_keras ``config["function"]``) rewritten as ConstOp layers.
_CONST_OPS = ("__operators__.add", "math.add", "math.multiply", "math.subtract",
              "math.truediv")


@cache
def classes() -> tuple[type, type]:
    """``(OutputQuantizeConfig, ConstOp)``, defined on first use (TensorFlow needed)."""
    import tensorflow_model_optimization as tfmot

    tf, keras = load()

    class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):  # type: ignore[misc]
        """Fake-quantizes the layer's output only (int8, asymmetric, per tensor, as tfmot's
        ``Add``); the layer has no weights to quantize."""

        def get_weights_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def get_activations_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def set_quantize_weights(self, layer: Any, quantize_weights: Any) -> None:
            pass

        def set_quantize_activations(self, layer: Any, quantize_activations: Any) -> None:
            pass

        def get_output_quantizers(self, layer: Any) -> list[Any]:
            return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self) -> dict[str, Any]:
            return {}

    functions = {"__operators__.add": tf.add, "math.add": tf.add,
                 "math.multiply": tf.multiply, "math.subtract": tf.subtract,
                 "math.truediv": tf.math.truediv}

    class ConstOp(keras.layers.Layer):  # type: ignore[misc,name-defined]
        """``x <op> value`` with a constant value: a TFOpLambda tfmot can wrap."""

        def __init__(self, op: str, value: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.op, self.value = op, float(value)

        def call(self, inputs: Any) -> Any:
            x = inputs[0] if isinstance(inputs, list | tuple) else inputs
            return functions[self.op](x, tf.constant(self.value, x.dtype))

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "op": self.op, "value": self.value}

    return OutputQuantizeConfig, ConstOp


def custom_objects() -> dict[str, type]:
    output_only, const_op = classes()
    return {"OutputQuantizeConfig": output_only, "ConstOp": const_op}


def replace_const_tfops(model: Any) -> tuple[Any, int]:
    """The model with ``TFOpLambda(x, constant)`` layers as :class:`ConstOp` (same weights,
    same outputs), and how many were replaced."""
    _, keras = load()
    config = model.get_config()
    replaced = 0
    for layer in config.get("layers", []):
        if layer.get("class_name") != "TFOpLambda":
            continue
        nodes = layer.get("inbound_nodes") or []
        if layer["config"].get("function") not in _CONST_OPS or len(nodes) != 1:
            continue
        node = nodes[0]
        entry = node if isinstance(node[0], str) else node[0]
        if not isinstance(node[0], str) and len(node) != 1:
            continue
        kwargs = entry[3] if len(entry) > 3 and isinstance(entry[3], dict) else {}
        value = kwargs.get("y")
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        layer["class_name"] = "ConstOp"
        layer.pop("module", None)
        layer["registered_name"] = "ConstOp"
        layer["config"] = {"name": layer["config"]["name"], "trainable": False,
                           "dtype": layer["config"].get("dtype", "float32"),
                           "op": layer["config"]["function"], "value": float(value)}
        entry[3] = {}
        replaced += 1
    if not replaced:
        return model, 0
    rebuilt = keras.Model.from_config(config, custom_objects=custom_objects())
    rebuilt.set_weights(model.get_weights())
    return rebuilt, replaced


def annotate_and_apply(model: Any) -> tuple[Any, tuple[str, ...]]:
    """A QAT model of ``model`` (a copy) with output-only configs where tfmot has none."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_module,
    )

    _, keras = load()
    quantize = tfmot.quantization.keras
    registry = registry_module.Default8BitQuantizeRegistry()
    output_only, _ = classes()
    model, replaced = replace_const_tfops(model)
    floated: list[str] = []

    def clone(layer: Any) -> Any:
        new = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer):
            return new
        if isinstance(layer, keras.layers.BatchNormalization) or registry.supports(layer):
            return quantize.quantize_annotate_layer(new)
        floated.append(f"{layer.name} ({type(layer).__name__})")
        return quantize.quantize_annotate_layer(new, quantize_config=output_only())

    with quantize.quantize_scope(custom_objects()):
        annotated = keras.models.clone_model(model, clone_function=clone)
        annotated.set_weights(model.get_weights())
        qat = quantize.quantize_apply(annotated)
    notes = []
    if floated:
        shown = ", ".join(floated[:4]) + (f" and {len(floated) - 4} more" if len(floated) > 4
                                          else "")
        notes.append(f"QAT quantizes only the output of {len(floated)} layer(s) tfmot has no "
                     f"int8 config for: {shown}")
    if replaced:
        notes.append(f"{replaced} TFOpLambda layer(s) with a constant operand (hard-swish, "
                     "hard-sigmoid) rewritten as ConstOp layers for QAT")
    return qat, tuple(notes)


_RANGE_VARS = ("post_activation_min", "post_activation_max", "output_min", "output_max")


def init_ranges(qat: Any, model: Any, x: Any) -> int:
    """Start QAT's activation ranges from the float model's on ``x`` (as PTQ calibrates)
    instead of tfmot's [-6, 6]: its moving averages (decay 0.999) barely move in the few
    steps of a few-shot fine-tune. Returns how many ranges were set."""
    _, keras = load()
    wanted: dict[str, list[tuple[str, Any]]] = {}
    for wrapper in qat.layers:
        inner = getattr(wrapper, "layer", None)
        for var in wrapper.non_trainable_weights:
            short = var.name.split("/")[-1].split(":")[0]
            if short == "quantize_layer_min":
                var.assign(min(0.0, float(x.min())))
            elif short == "quantize_layer_max":
                var.assign(max(0.0, float(x.max())))
            elif inner is not None and short in _RANGE_VARS:
                wanted.setdefault(inner.name, []).append((short, var))
    names = [n for n in wanted if _has_layer(model, n)]
    if not names:
        return 0
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    values = probe.predict(x, verbose=0, batch_size=64)
    values = values if isinstance(values, list) else [values]
    for name, value in zip(names, values, strict=True):
        for short, var in wanted[name]:
            var.assign(min(0.0, float(value.min())) if short.endswith("min")
                       else max(0.0, float(value.max())))
    return len(names)


def _has_layer(model: Any, name: str) -> bool:
    try:
        model.get_layer(name)
    except ValueError:
        return False
    return True

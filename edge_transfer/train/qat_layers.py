"""QAT on the layers tfmot's default int8 scheme refuses (EfficientNet, MobileNetV3, RegNet,
DenseNet).

tfmot's ``quantize_model`` refuses ``Rescaling``/``Normalization`` (EfficientNet's and
MobileNetV3's preprocessing), the ``Multiply`` of squeeze-excite and hard-swish, the
``TFOpLambda`` layers Keras builds from ``x + 3`` or ``x * (1/6)`` (hard-swish, hard-sigmoid)
and from ``x + skip`` (RegNet's residual sum), and a ``BatchNormalization`` that does not
follow a convolution (DenseNet's pre-activation). :func:`annotate_and_apply` rewrites the
``TFOpLambda`` layers whose other operand is a constant into :class:`ConstOp` layers and
those whose other operand is a tensor into ``Add``/``Subtract``/``Multiply`` layers,
annotates every layer tfmot supports with its own config and the rest (that standalone
BatchNormalization included) with an output-only ``QuantizeConfig`` (their outputs are
fake-quantized, as int8 TFLite and ONNX run them), and applies quantization. A layer that
quantization still fails on, named by the error, is left in float and quantization applied
again (at most :data:`MAX_FLOAT_LAYERS` times). What it rewrote or left in float is named in
the returned notes.

The output quantizer is not optional. Without a fake-quant node after such a layer, the TFLite
converter folds a constant ``Mul``/``Add`` (EfficientNet's ``Rescaling(1/255)``) into the next
convolution's float weights but quantizes them with the ranges QAT learned for the unfolded
weights: on raw 0-255 input every weight of the stem rounds to 0 and the model is at chance.

>>> qat, notes = annotate_and_apply(model)                               # doctest: +SKIP
>>> notes                                                                # doctest: +SKIP
('QAT quantizes only the output of 3 layer(s) tfmot has no int8 config for: rescaling ...',)
>>> failing_layer(ValueError("Exception encountered when calling layer 'tf.math.maximum' "
...                          "(type TFOpLambda).\\n\\nbad call"))
'tf.math.maximum'
>>> failing_layer(RuntimeError("Layer bn:<class 'BatchNormalization'> is not supported."))
'bn'
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from edge_transfer.core import interrupts
from edge_transfer.core.errors import ConversionError, one_line
from edge_transfer.core.keras import load
from edge_transfer.train import qat_scheme
from edge_transfer.train.models import output_in

# TFOpLambda symbols (tf_keras ``config["function"]``) rewritten as ConstOp layers.
_CONST_OPS = ("__operators__.add", "math.add", "math.multiply", "math.subtract",
              "math.truediv")
# TFOpLambda symbols of two tensors rewritten as the Keras merge layer of the same maths.
_TENSOR_OPS = {"__operators__.add": "Add", "math.add": "Add", "math.subtract": "Subtract",
               "math.multiply": "Multiply"}
# How many layers quantization may fail on (each is left in float and QAT applied again),
# beyond those left float up front (unwrappable_layers).
MAX_FLOAT_LAYERS = 8

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
    """The model with ``TFOpLambda(x, constant)`` layers as :class:`ConstOp` and
    ``TFOpLambda(x, tensor)`` layers as ``Add``/``Subtract``/``Multiply`` (same names, weights
    and outputs), and how many were replaced."""
    _, keras = load()
    config = model.get_config()
    replaced = sum(_rewrite(layer) for layer in config.get("layers", []))
    if not replaced:
        return model, 0
    rebuilt = keras.Model.from_config(config, custom_objects=custom_objects())
    rebuilt.set_weights(model.get_weights())
    return rebuilt, replaced


def _rewrite(layer: dict[str, Any]) -> bool:
    """Rewrite one layer's config in place if it is a TFOpLambda of a constant or a tensor."""
    function = layer["config"].get("function") if layer.get("class_name") == "TFOpLambda" \
        else None
    nodes = layer.get("inbound_nodes") or []
    if function not in (*_CONST_OPS, *_TENSOR_OPS) or len(nodes) != 1:
        return False
    node = nodes[0]
    if not isinstance(node[0], str) and len(node) != 1:
        return False
    entry = node if isinstance(node[0], str) else node[0]
    kwargs = entry[3] if len(entry) > 3 and isinstance(entry[3], dict) else {}
    value = kwargs.get("y")
    if set(kwargs) - {"y", "name"}:
        return False
    base = {"name": layer["config"]["name"], "dtype": layer["config"].get("dtype", "float32")}
    if isinstance(value, int | float) and not isinstance(value, bool) and \
            function in _CONST_OPS:
        layer.pop("module", None)
        layer["class_name"] = layer["registered_name"] = "ConstOp"
        layer["config"] = {**base, "trainable": False, "op": function, "value": float(value)}
        layer["inbound_nodes"] = [[[*entry[:3], {}]]]
        return True
    if isinstance(value, list | tuple) and _is_tensor_reference(value) and \
            function in _TENSOR_OPS:
        layer.pop("module", None)
        layer["class_name"] = _TENSOR_OPS[function]
        layer.pop("registered_name", None)
        layer["config"] = {**base, "trainable": True}
        layer["inbound_nodes"] = [[[*entry[:3], {}], [*value[:3], {}]]]
        return True
    return False


def _is_tensor_reference(value: Any) -> bool:
    """A Keras tensor in a serialized node's kwargs: ``[layer name, node, tensor]``."""
    return (isinstance(value, list | tuple) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) for v in value[1:]))


def unwrappable_layers(model: Any) -> list[tuple[str, str]]:
    """``(name, why)`` of the layers tfmot's QuantizeWrapper cannot take, so left float: a
    ``TFOpLambda`` (any TensorFlow function called on Keras tensors, ``tf.maximum(x, skip)``,
    ``tf.split``, ...) that :func:`replace_const_tfops` did not rewrite. Wrapped, its output
    gains a dimension and the layer after it fails, named as if it were the culprit."""
    return [(layer.name, f"{layer.name} ({type(layer).__name__} "
                         f"{layer.get_config().get('function', '?')}): tfmot's QuantizeWrapper "
                         "cannot wrap a TFOpLambda")
            for layer in model.layers if type(layer).__name__ == "TFOpLambda"]


def follows_weighted_layer(layer: Any) -> bool:
    """Whether tfmot folds this BatchNormalization into the layer before it: that layer is
    a Conv2D, DepthwiseConv2D or Dense without activation whose only consumer it is (tfmot's
    ``Conv2DBatchNormQuantize`` / ``DenseBatchNormQuantize`` patterns)."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return False
    inbound = nodes[0].inbound_layers
    inbound = inbound if isinstance(inbound, list | tuple) else [inbound]
    if len(inbound) != 1:
        return False
    before = inbound[0]
    if type(before).__name__ not in ("Conv2D", "DepthwiseConv2D", "Dense"):
        return False
    return (before.get_config().get("activation") == "linear"
            and len(before._outbound_nodes) == 1)


_FAILED_CALL = re.compile(r"calling layer ['\"]([^'\"]+)['\"] \(type ")
_INCOMPATIBLE = re.compile(r"of layer ['\"]([^'\"]+)['\"] is incompatible")
_NOT_SUPPORTED = re.compile(r"Layer (\S+?):<class ")


def failing_layer(error: BaseException) -> str | None:
    """The layer a Keras / tfmot error names as the one that failed (innermost call), or
    None when it names none."""
    text = str(error)
    for pattern in (_FAILED_CALL, _INCOMPATIBLE, _NOT_SUPPORTED):
        match = pattern.search(text)
        if match:
            name = match.group(1)
            return name[len("quant_"):] if name.startswith("quant_") else name
    return None


def annotate_and_apply(model: Any) -> tuple[Any, tuple[str, ...]]:
    """A QAT model of ``model`` (a copy) with output-only configs where tfmot has none.

    Raises ConversionError naming the layer when quantization fails on a layer that cannot
    be left in float, or on more than :data:`MAX_FLOAT_LAYERS` layers beyond those left float up
    front.
    """
    _, keras = load()
    model, replaced = replace_const_tfops(model)
    left_float = dict(unwrappable_layers(model))   # layer name -> why it stays float
    up_front = len(left_float)
    while True:
        try:
            qat, output_only = _apply(model, tuple(left_float))
            break
        except Exception as exc:
            interrupts.check(exc)
            name = failing_layer(exc)
            layer = _find(model, name)
            if layer is None or name in left_float \
                    or len(left_float) - up_front >= MAX_FLOAT_LAYERS \
                    or isinstance(layer, keras.layers.InputLayer):
                raise ConversionError(
                    f"QAT cannot quantize {_where(layer)}: {one_line(exc, 200, first=True)}; "
                    "export --keep-float auto instead (int8 with the worst layers in float)"
                ) from exc
            left_float[str(name)] = f"{name} ({type(layer).__name__}): " \
                                    f"{one_line(exc, 120, first=True)}"
    return qat, _notes(output_only, replaced, left_float)


def _apply(model: Any, left_float: tuple[str, ...]) -> tuple[Any, list[str]]:
    """quantize_apply on ``model`` annotated layer by layer; layers in ``left_float`` are not
    annotated (they stay float). Also returns the layers given output-only configs."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_module,
    )

    _, keras = load()
    quantize = tfmot.quantization.keras
    registry = registry_module.Default8BitQuantizeRegistry()
    output_only, _ = classes()
    folded = {layer.name for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization)
              and follows_weighted_layer(layer)}
    floated: list[str] = []

    def clone(layer: Any) -> Any:
        new = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer) or layer.name in left_float:
            return new
        if layer.name in folded or registry.supports(layer):
            return quantize.quantize_annotate_layer(new)
        floated.append(f"{layer.name} ({type(layer).__name__})")
        return quantize.quantize_annotate_layer(new, quantize_config=output_only())

    with quantize.quantize_scope(custom_objects()):
        annotated = keras.models.clone_model(model, clone_function=clone)
        annotated.set_weights(model.get_weights())
        return qat_scheme.quantize_apply(annotated), floated


def _where(layer: Any) -> str:
    """``layer NAME (Class), fed by NAME (Class)``: an error may name the layer after the
    one at fault (a broken wrapped output fails its consumer)."""
    if layer is None:
        return "this model"
    nodes = getattr(layer, "_inbound_nodes", [])
    inbound = nodes[0].inbound_layers if len(nodes) == 1 else []
    inbound = inbound if isinstance(inbound, list | tuple) else [inbound]
    fed = ", ".join(f"{x.name} ({type(x).__name__})" for x in inbound
                    if type(x).__name__ != "InputLayer")
    return f"layer {layer.name} ({type(layer).__name__})" + (f", fed by {fed}" if fed else "")


def _find(model: Any, name: str | None) -> Any:
    if name is None:
        return None
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _notes(output_only: list[str], replaced: int, left_float: dict[str, str]
           ) -> tuple[str, ...]:
    notes = []
    if output_only:
        notes.append(f"QAT quantizes only the output of {len(output_only)} layer(s) tfmot has "
                     f"no int8 config for: {_shown(output_only)}")
    if replaced:
        notes.append(f"{replaced} TFOpLambda layer(s) (x + 3 of hard-swish, x + skip of a "
                     "residual sum, ...) rewritten as Keras layers QAT can wrap")
    if left_float:
        notes.append(f"{len(left_float)} layer(s) left in float, QAT cannot take them: "
                     + "; ".join(left_float.values()))
    return tuple(notes)


def _shown(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


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
    probe = keras.Model(model.input, [output_in(model, model.get_layer(n)) for n in names])
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

"""tfmot's default 8-bit QAT scheme with one defect mended: a convolution followed by a
``ReLU`` layer keeps its weight quantization.

tfmot 0.8.1's ``LayerReLUQuantize`` transform, meant to drop the fake-quant between ``Add`` and
``ReLU``, matches ``Add|Conv2D|DepthwiseConv2D|Dense`` and gives that layer a
``NoOpQuantizeConfig``: a convolution written ``Conv2D`` then ``ReLU()`` (MobileNetV3's
squeeze-excite ``Conv``) then trains with float weights. The TFLite converter quantizes them
afterwards without QAT's ranges; in ONNX they stayed float (MobileNetV3 QAT files were 1.57-1.66x
the post-training int8 bytes). Here such a layer's own activation becomes tfmot's
``NoOpActivation`` instead, as tfmot's Conv + BatchNormalization + ReLU transform does: its
weights are fake-quantized and there is still no fake-quant between it and the ReLU.

The same is done for a convolution followed by ``AveragePooling2D``: TFLite's
``AVERAGE_POOL_2D`` needs one scale on its input and output, and with a fake-quant after the
convolution and the pooling's output tied to a ``Concatenate`` (DenseNet's transition) the
converter failed ("quantization parameters violate the same scale constraint").

>>> qat = quantize_apply(annotated_model)                                # doctest: +SKIP
"""

from __future__ import annotations

from functools import cache
from typing import Any


def quantize_apply(annotated: Any) -> Any:
    """``tfmot.quantization.keras.quantize_apply`` with the mended scheme."""
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras.quantize_apply(annotated, scheme=scheme_class()())


def quantize_model(model: Any) -> Any:
    """``tfmot.quantization.keras.quantize_model`` (annotate every layer, apply) with the
    mended scheme."""
    import tensorflow_model_optimization as tfmot

    return quantize_apply(tfmot.quantization.keras.quantize_annotate_model(model))


@cache
def scheme_class() -> type:
    """The scheme class, defined on first use (TensorFlow needed)."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_layout_transform as layout,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_scheme as scheme,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (
        model_transformer,
    )

    class Layout(layout.Default8BitQuantizeLayoutTransform):  # type: ignore[misc]
        """tfmot 0.8.1's default transforms, in its order, the two ReLU ones mended."""

        def apply(self, model: Any, layer_quantize_map: Any) -> Any:
            return model_transformer.ModelTransformer(
                model, _transforms(), set(layer_quantize_map.keys()), layer_quantize_map
            ).transform()

    class Scheme(scheme.Default8BitQuantizeScheme):  # type: ignore[misc]
        def get_layout_transformer(self) -> Any:
            return Layout()

    return Scheme


def _transforms() -> list[Any]:
    """tfmot 0.8.1's default transforms, in its order, the two ReLU ones mended and the
    pooling one added last."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_transforms as t,
    )

    relu, relu_activation, pool_after_conv = _mended_transforms()
    return [
        t.InputLayerQuantize(), t.SeparableConv1DQuantize(), t.SeparableConvQuantize(),
        t.Conv2DReshapeBatchNormReLUQuantize(),
        t.Conv2DReshapeBatchNormActivationQuantize(),
        t.Conv2DBatchNormReLUQuantize(), t.Conv2DBatchNormActivationQuantize(),
        t.Conv2DReshapeBatchNormQuantize(), t.Conv2DBatchNormQuantize(),
        t.ConcatTransform6Inputs(), t.ConcatTransform5Inputs(),
        t.ConcatTransform4Inputs(), t.ConcatTransform3Inputs(), t.ConcatTransform(),
        t.DenseBatchNormQuantize(), t.DenseBatchNormReLUQuantize(),
        t.DenseBatchNormActivationQuantize(), relu(), relu_activation(),
        pool_after_conv(),
    ]


@cache
def _mended_transforms() -> tuple[type, type, type]:
    """The transform classes (defined once): tfmot's two ReLU ones, whose matched convolution
    now keeps its weight quantization (its own activation becomes ``NoOpActivation``), and
    the same for a convolution followed by an average pooling."""
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_aware_activation,
    )
    from tensorflow_model_optimization.python.core.quantization.keras import (
        utils as quantize_utils,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_transforms as t,
    )

    no_op = quantize_aware_activation.NoOpActivation

    def replacement(self: Any, match_layer: Any) -> Any:
        before = match_layer.input_layers[0]
        if before.layer["class_name"] == "Add":
            return t.LayerReLUQuantize.replacement(self, match_layer)
        config = before.layer["config"]
        if before.metadata.get("quantize_config") is None and \
                config.get("activation") == "linear":
            config["activation"] = quantize_utils.serialize_activation(
                no_op(), use_legacy_format=True)
        return match_layer

    def custom_objects(self: Any) -> dict[str, Any]:
        return {**t.LayerReLUQuantize.custom_objects(self), "NoOpActivation": no_op}

    def pool_pattern(self: Any) -> Any:
        return t.LayerPattern("AveragePooling2D", inputs=[t.LayerPattern(
            "Conv2D|DepthwiseConv2D", config={"activation": "linear"})])

    # An average pooling after a convolution: no fake-quant between them (TFLite's
    # AVERAGE_POOL_2D needs its input's scale on its output).
    pool_after_conv = type("PoolAfterConv", (t.LayerReLUQuantize,), {
        "pattern": pool_pattern, "replacement": replacement, "custom_objects": custom_objects})
    relu = type("ReLUKeepsWeights", (t.LayerReLUQuantize,),
                {"replacement": replacement, "custom_objects": custom_objects})
    relu_activation = type("ReluActivationKeepsWeights", (t.LayerReluActivationQuantize,),
                           {"replacement": replacement, "custom_objects": custom_objects})
    return relu, relu_activation, pool_after_conv

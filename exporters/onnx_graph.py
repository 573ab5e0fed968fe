"""The float ONNX graph of a Keras source, which every ONNX variant and the per-layer
quantizer (:mod:`exporters.onnx_debug`) start from: converted once per source and opset
(tf2onnx, a fallback opset and path when one fails), names made canonical, the batch axis
dynamic; fp16; the setting both ONNX quantizers share (``REDUCE_RANGE``). Split from
onnx.py so that the format module and its per-layer quantizer both import it, and not each
other."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edge_transfer.core import interrupts
from edge_transfer.core.errors import ConversionError, UnsupportedExportError, one_line
from edge_transfer.runtime.backends import open_backend
from exporters.failures import conversion_failure
from exporters.spec import KerasSource

BATCH_AXIS = "batch"


def _float_model(source: KerasSource, opset: int) -> Any:
    """The fp32 graph of ``source``, converted once per opset and shared by its variants (as
    is the reason it cannot be: each path tried again would fail again, slowly)."""
    import onnx

    key = float_key(opset, source.key_suffix)
    if isinstance(source.cache.get(key), str):
        raise ConversionError(source.cache[key])
    if key not in source.cache:
        try:
            model = convert_float(source, opset)
        except ConversionError as exc:
            source.cache[key] = str(exc)
            raise
        canonical_names(model.graph)
        for value in (*model.graph.input, *model.graph.output):
            dims = value.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].dim_param = BATCH_AXIS
        source.cache[key] = model.SerializeToString()
    return onnx.load_from_string(source.cache[key])


def adapter_nodes(model: Any) -> list[str]:
    """The nodes of the pixel adapter (:func:`edge_transfer.train.models.pixel_adapter`) in a
    graph."""
    from edge_transfer.train.models import PIXEL_ADAPTER

    return [node.name for node in model.graph.node if PIXEL_ADAPTER in node.name]


def float_key(opset: int, suffix: str = "") -> str:
    """The cache key of a source's float graph (``suffix``: :attr:`KerasSource.key_suffix`).

    >>> float_key(17, "-pixels")
    'onnx-fp32-pixels-opset17'
    """
    return f"onnx-fp32{suffix}-opset{opset}"


def _float16(model: Any) -> Any:
    """fp16 weights and arithmetic, float32 inputs and outputs (``keep_io_types``)."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise UnsupportedExportError(
            "ONNX fp16 needs onnxconverter-common: pip install onnxconverter-common "
            "(it comes with edge-transfer[train])") from exc
    return float16.convert_float_to_float16(model, keep_io_types=True)


FALLBACK_OPSET = 13


def conversion_paths(opset: int) -> list[tuple[str, str, int]]:
    """(label, tf2onnx entry point, opset) tried in order until ONNX Runtime loads the graph.

    >>> [label for label, _, _ in conversion_paths(17)]
    ['from_keras opset 17', 'from_function opset 17', 'from_keras opset 13']
    """
    paths = [(f"from_keras opset {opset}", "keras", opset),
             (f"from_function opset {opset}", "function", opset)]
    if opset != FALLBACK_OPSET:
        paths.append((f"from_keras opset {FALLBACK_OPSET}", "keras", FALLBACK_OPSET))
    return paths


def convert_float(source: KerasSource, opset: int) -> Any:
    """tf2onnx's fp32 graph of ``source`` that ONNX Runtime can load.

    Grouped convolutions (RegNet, ResNeXt-style blocks) run in tf_keras through an
    XLA-compiled ``tf.function``, which tf2onnx leaves as a ``PartitionedCall`` node that no
    ONNX runtime has (tf2onnx issue #2099); they are traced as plain convolutions instead
    (same maths, checked by the export's comparison with Keras). So is the exact GELU
    (ConvNeXt): TensorFlow computes it with ``Erfc``, which tf2onnx cannot convert, so it is
    traced as ``0.5 x (1 + erf(x / sqrt 2))``. Each path of
    :func:`conversion_paths` is tried until ONNX Runtime loads the result; if none does, the
    error names every path's reason and failing node.
    """
    failures = []
    with inline_grouped_convolutions(source.model), gelu_through_erf(source.model):
        for label, entry, path_opset in conversion_paths(opset):
            try:
                model = _tf2onnx(source, entry, path_opset)
            except Exception as exc:
                interrupts.check(exc)
                failures.append(f"{label}: {conversion_failure('onnx', exc)}")
                continue
            refusal = runtime_refusal(model)
            if refusal is None:
                return model
            failures.append(f"{label}: {refusal}")
    raise ConversionError("no tf2onnx path gives a graph ONNX Runtime can run (" +
                          "; ".join(failures) + ")")


def _tf2onnx(source: KerasSource, entry: str, opset: int) -> Any:
    import tf2onnx

    if entry == "keras":
        model, _ = tf2onnx.convert.from_keras(
            source.converted, input_signature=source.input_signature(), opset=opset)
        return model
    from edge_transfer.core.keras import load

    tf, _ = load()
    keras_model = source.converted
    function = tf.function(lambda x: keras_model(x, training=False),
                           input_signature=source.input_signature())
    model, _ = tf2onnx.convert.from_function(function, input_signature=source.input_signature(),
                                             opset=opset)
    return model


def runtime_refusal(model: Any) -> str | None:
    """Why ONNX Runtime refuses ``model`` (naming the first op it has no kernel for), or None.

    tf2onnx writes TensorFlow ops it cannot map (``PartitionedCall``, ...) into the graph and
    only logs them; the file would be refused at load time on the device.
    """
    import onnx

    unknown = [node for node in model.graph.node if node.domain in ("", "ai.onnx")
               and not onnx.defs.has(node.op_type)]
    if unknown:
        node = unknown[0]
        return (f"tf2onnx left TensorFlow op {node.op_type} (node {node.name}) that ONNX "
                f"Runtime has no kernel for ({len(unknown)} such nodes)")
    try:
        open_backend(model.SerializeToString(), format="onnx")
    except Exception as exc:
        interrupts.check(exc)
        return f"ONNX Runtime refuses the graph: {one_line(exc, 200, first=True)}"
    return None


@contextmanager
def inline_grouped_convolutions(model: Any) -> Iterator[int]:
    """Trace every grouped convolution of ``model`` as a plain ``tf.nn.convolution`` (not
    tf_keras' XLA-compiled ``tf.function``) while the block runs; yields how many."""
    from edge_transfer.core.keras import load

    _, keras = load()
    layers = [layer for layer in model.submodules
              if isinstance(layer, keras.layers.Conv2D) and getattr(layer, "groups", 1) > 1]
    for layer in layers:
        layer._jit_compiled_convolution_op = _plain_convolution(layer)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            del layer._jit_compiled_convolution_op   # back to the class's compiled method


@contextmanager
def gelu_through_erf(model: Any) -> Iterator[int]:
    """Trace every exact-GELU activation of ``model`` (``activation="gelu"``, as ConvNeXt's)
    as ``0.5 x (1 + erf(x / sqrt 2))`` while the block runs; yields how many layers.

    TensorFlow's ``gelu(approximate=False)`` is ``0.5 x erfc(-x / sqrt 2)``, and tf2onnx has
    no conversion for ``Erfc`` (ONNX has ``Erf``): the same function, written with ``Erf``."""
    originals = [(layer, layer.activation) for layer in model.submodules
                 if getattr(getattr(layer, "activation", None), "__name__", None) == "gelu"]
    for layer, _ in originals:
        layer.activation = _gelu_erf
    try:
        yield len(originals)
    finally:
        for layer, activation in originals:
            layer.activation = activation


def _gelu_erf(x: Any) -> Any:
    from edge_transfer.core.keras import load

    tf, _ = load()
    return 0.5 * x * (1.0 + tf.math.erf(x * 0.7071067811865476))


def _plain_convolution(layer: Any) -> Any:
    def convolution(inputs: Any, kernel: Any) -> Any:
        return layer.convolution_op(inputs, kernel)

    return convolution


_GENERATED = re.compile(r"__(\d+)(?=(:\d+)?$)")


def canonical_names(graph: Any) -> None:
    """Names and order that do not depend on the converting process, so the same model gives
    the same bytes: the ``NAME__<n>`` suffixes tf2onnx gives the nodes it inserts renumbered
    1, 2, 3... in the order the nodes use them (tf2onnx draws ``n`` from a process-wide
    counter, and stores the initializers in an order of its own); constants
    that several nodes share named ``shared_constant__<k>`` in order of first use (tf2onnx
    merges equal constants under whichever name its hash order puts first); initializers
    sorted by name. Every renaming is one-to-one.
    """
    numbers: dict[str, str] = {}

    def renumber(name: str) -> str:
        match = _GENERATED.search(name)
        if not match:
            return name
        new = numbers.setdefault(match.group(1), str(len(numbers) + 1))
        return name[: match.start(1)] + new + name[match.end(1):]

    _rename(graph, renumber)
    shared = _shared_constants(graph)
    _rename(graph, lambda name: shared.get(name, name))
    initializers = sorted(graph.initializer, key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _rename(graph: Any, rename: Callable[[str], str]) -> None:
    """Apply ``rename`` to every node and value name of ``graph`` and of its subgraphs, the
    nodes first, in graph order (a ``rename`` that numbers names numbers them so)."""
    for node in graph.node:
        node.name = rename(node.name)
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        for attribute in node.attribute:
            for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                _rename(sub, rename)
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        value.name = rename(value.name)


def _shared_constants(graph: Any) -> dict[str, str]:
    """``{name: shared_constant__<k>}`` for the initializers more than one node reads."""
    initializers = {t.name for t in graph.initializer}
    readers = Counter(name for node in graph.node for name in node.input if name in initializers)
    shared = [name for name in dict.fromkeys(n for node in graph.node for n in node.input)
              if readers[name] > 1]
    return {name: f"shared_constant__{k}" for k, name in enumerate(shared, start=1)}


# 7-bit weights. x86 CPUs without VNNI (AVX2, AVX-512) compute int8 convolutions with a
# 16-bit intermediate that saturates on some models, so the workstation's check and an ARM
# device disagree (seen: the same .onnx 0.969 on x86-64, 0.956 on arm64, 3 of 225 images);
# with 7-bit weights both compute the same result. ONNX Runtime's own advice for x86.
# A QAT graph gets the same 7-bit grid (store_int8_weights): QAT's float biases stop no
# default session from fusing its convolutions into integer kernels (ONNX Runtime's
# WeightBiasQuantization quantizes them at load time), and with 8-bit weights those kernels
# saturated: the demo's QAT file agreed with exact QDQ arithmetic on 220 of 225 images, a
# MobileNetV2's on 219; on the 7-bit grid 225 and 225, at the same accuracy.
REDUCE_RANGE = True

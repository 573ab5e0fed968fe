"""Keras model files and model surgery: loading safely, flattening, heads, L2-SP.

Every ``.keras`` file this project reads goes through :func:`load_keras_model`: safe mode
(no arbitrary code from ``Lambda`` layers) unless ``unsafe_load=True``, the project's custom
objects registered, and a :class:`~edge_transfer.core.errors.ModelError` naming the fix for a
missing or corrupt file.

Fine-tuned models are FLAT functional models (the backbone's layers, not the backbone as
one nested layer): tfmot's QAT refuses nested models. :func:`flatten_model` inlines nested
models of any user model.

Not run as a doctest (it needs a saved model; tests/test_backbones.py uses one):

>>> model = load_keras_model("runs/target/model.keras")      # doctest: +SKIP
>>> is_flat(flatten_model(model))                            # doctest: +SKIP
True
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.errors import ModelError, one_line
from edge_transfer.core.keras import load
from edge_transfer.core.preprocessing import Preprocessing

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@cache
def custom_objects() -> dict[str, Any]:
    """The project's serialisable Keras objects, registered under the ``edge_transfer`` package.

    Built on first use (importing TensorFlow), never at import time of this module.
    """
    tf, keras = load()

    @keras.saving.register_keras_serializable(package="edge_transfer")
    class L2SP(keras.regularizers.Regularizer):  # type: ignore[name-defined]
        """L2-SP: ``alpha * sum((w - w0) ** 2)``, a pull towards the starting weights ``w0``.

        Li, Grandvalet & Davoine (2018), "Explicit inductive bias for transfer learning
        with convolutional networks". With ``w0 = 0`` it is plain L2.
        """

        def __init__(self, alpha: float = 0.01, reference: Any = None) -> None:
            self.alpha = float(alpha)
            self.reference = None if reference is None else np.asarray(reference, np.float32)

        def __call__(self, weights: Any) -> Any:
            start = 0.0 if self.reference is None else tf.constant(self.reference)
            delta = tf.cast(weights, tf.float32) - start
            return self.alpha * tf.reduce_sum(tf.square(delta))

        def get_config(self) -> dict[str, Any]:
            reference = None if self.reference is None else self.reference.tolist()
            return {"alpha": self.alpha, "reference": reference}

    return {"edge_transfer>L2SP": L2SP, "L2SP": L2SP, **application_layers()}


# keras.applications' own layer classes. tf_keras saves them by class name but registers none
# of them, and its loader then returns the bare name where the layer should be: load_model
# fails with "'str' object is not callable" (ConvNeXt, InceptionResNetV2).
APPLICATION_LAYERS = {
    "tf_keras.src.applications.convnext": ("LayerScale", "StochasticDepth"),
    "tf_keras.src.applications.inception_resnet_v2": ("CustomScaleLayer",),
}


def application_layers() -> dict[str, Any]:
    """The unregistered layer classes of keras.applications (:data:`APPLICATION_LAYERS`) by
    class name, as custom objects; a module or class this tf_keras lacks is left out."""
    import importlib

    found: dict[str, Any] = {}
    for module_name, names in APPLICATION_LAYERS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found |= {name: getattr(module, name) for name in names if hasattr(module, name)}
    return found


def l2sp(alpha: float, reference: np.ndarray | None = None) -> Any:
    """An :class:`L2SP` regulariser towards ``reference`` (the starting weights)."""
    return custom_objects()["L2SP"](alpha, reference)


def check_model_file(path: str | Path, unsafe_load: bool = False) -> Path:
    """What can be told of a model file without TensorFlow: there, a Keras file, a whole
    ``.keras`` archive, not empty, no ``Lambda`` code in its config (Keras' safe mode refuses
    the same when loading) and a legacy HDF5 file, only with ``unsafe_load``.

    >>> check_model_file("model.txt")
    Traceback (most recent call last):
    ...
    edge_transfer.core.errors.ModelError: model file model.txt does not exist; check the path
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; check the path")
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelError(f"{path} is not a Keras model file; give a .keras (or .h5) file")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a valid .keras archive (corrupt or truncated); "
                         "save the model again")
    if path.suffix.lower() != ".keras" and not unsafe_load:
        # tf_keras applies safe_mode to .keras archives only: an HDF5 model's Lambda layers
        # would run their stored code unchecked.
        raise ModelError(
            f"{path} is a legacy HDF5 model, which Keras cannot load safely; re-save it as "
            ".keras (model.save('model.keras')), or pass --unsafe-load if you trust the file"
        )
    if path.stat().st_size == 0:
        raise ModelError(f"{path} is empty (0 bytes); save the model again")
    if not unsafe_load and path.suffix.lower() == ".keras" and _has_lambda_code(path):
        raise ModelError(LAMBDA_REFUSED.format(path=path))
    return path


LAMBDA_REFUSED = ("{path} contains a Lambda layer (arbitrary code); pass --unsafe-load only "
                  "if you trust the file")


def _has_lambda_code(path: Path) -> bool:
    """Whether a ``.keras`` archive's config holds a Lambda layer with Python code (what
    tf_keras' safe mode refuses); an unreadable config is left to Keras to judge."""
    import json
    import zlib

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, OSError, ValueError, EOFError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile, zlib.error):
        return False
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            inner = node.get("config")
            if node.get("class_name") == "Lambda" and isinstance(inner, dict) and "lambda" in (
                    inner.get("function_type"), inner.get("output_shape_type")):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def load_keras_model(path: str | Path, unsafe_load: bool = False, compile: bool = False) -> Any:
    """Load a tf_keras model file (``.keras``, or legacy ``.h5``), checked first
    (:func:`check_model_file`).

    ``unsafe_load=True`` allows ``Lambda`` layers (arbitrary Python code): only for files you
    trust.
    """
    path = check_model_file(path, unsafe_load)
    _, keras = load()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf_keras warns about Lambda code it then refuses
            return keras.models.load_model(path, custom_objects=custom_objects(),
                                           compile=compile, safe_mode=not unsafe_load)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise ModelError(LAMBDA_REFUSED.format(path=path)) from exc
        raise ModelError(f"cannot load {path}: {one_line(exc, first=True)}; "
                         "save the model again") from exc
    except (OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot load {path}: {one_line(exc, first=True)}; "
                         "save the model again") from exc


def save_keras_model(model: Any, path: Path) -> None:
    """Save to a temporary name, then rename into place (``atomic.atomic_path``)."""
    from edge_transfer.core.atomic import atomic_path

    with atomic_path(path, keep_suffix=True) as tmp:  # Keras picks the format by the suffix
        model.save(tmp)


def is_nested_model(layer: Any) -> bool:
    _, keras = load()
    return isinstance(layer, keras.Model)


def is_flat(model: Any) -> bool:
    """True when no layer of ``model`` is itself a model."""
    return not any(is_nested_model(layer) for layer in model.layers)


def flatten_model(model: Any) -> Any:
    """The same network as a flat functional model sharing ``model``'s layers (and weights).

    Nested models are inlined recursively; ``training=`` arguments given to a nested model
    call are dropped (freeze BatchNorm layers instead: a frozen BatchNorm runs in inference).
    """
    if is_flat(model):
        return model
    _, keras = load()
    if not getattr(model, "_is_graph_network", False):
        raise ModelError(f"model {model.name} is subclassed; only functional and Sequential "
                         "models can be flattened")
    inputs = [_input_like(t) for t in model.inputs]
    outputs = _call_flat(model, inputs)
    try:
        return keras.Model(inputs, outputs, name=model.name)
    except ValueError as exc:
        raise ModelError(f"cannot flatten {model.name}: {one_line(exc, first=True)}; "
                         "give the nested models' layers unique names") from exc


def _input_like(tensor: Any) -> Any:
    """A new input like ``tensor``: by shape for a dense tensor (an InputLayer built from a
    type_spec cannot be cloned: tfmot's quantize_apply fails on it with "Unknown object:
    '__typespec__'"), by type_spec for a sparse or ragged one."""
    tf, keras = load()
    name = tensor.name.split(":")[0]
    if isinstance(tensor.type_spec, tf.TensorSpec):
        return keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype, name=name)
    return keras.Input(type_spec=tensor.type_spec, name=name)


def _call_flat(model: Any, inputs: list[Any]) -> Any:
    """Re-run ``model``'s graph on ``inputs``, inlining nested models (see tf_keras Functional)."""
    tf, _ = load()
    usage = model._tensor_usage_count
    tensors: dict[str, list[Any]] = {}
    for ref, new in zip(model.inputs, inputs, strict=True):
        tensors[str(id(ref))] = [new] * usage[str(id(ref))]
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(i not in tensors for i in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            layer = node.layer
            if is_nested_model(layer) and getattr(layer, "_is_graph_network", False):
                flat = _call_flat(layer, tf.nest.flatten(args))
                outputs = tf.nest.pack_sequence_as(layer._nested_outputs, tf.nest.flatten(flat))
            else:
                outputs = layer(*args, **kwargs)
            for ref_id, out in zip(node.flat_output_ids, tf.nest.flatten(outputs), strict=True):
                tensors[ref_id] = [out] * usage[ref_id]
    results = [tensors[str(id(ref))].pop() for ref in model.outputs]
    return tf.nest.pack_sequence_as(model._nested_outputs, results)


def cut_model(model: Any, layer_name: str | None) -> Any:
    """The sub-model from ``model``'s input to ``layer_name``'s output (default: the
    penultimate layer, i.e. everything but the classifier)."""
    _, keras = load()
    flat = flatten_model(model)
    names = [layer.name for layer in flat.layers]
    if layer_name is None:
        if len(flat.layers) < 3:
            raise ModelError(f"{model.name} is too small to cut; pass --cut-layer NAME")
        layer = flat.layers[-2]
    elif layer_name not in names:
        shown = ", ".join(names[-8:])
        raise ModelError(f"no layer {layer_name!r} in {model.name}; the last layers are {shown}")
    else:
        layer = flat.get_layer(layer_name)
    return keras.Model(flat.inputs, output_in(flat, layer), name=f"{model.name}_cut")


def output_in(model: Any, layer: Any) -> Any:
    """``layer``'s output tensor within ``model``'s graph (a layer shared by several models,
    e.g. after flattening, has one output per model)."""
    nodes: set[str] = getattr(model, "_network_nodes", set())
    for index in range(len(layer._inbound_nodes)):
        if f"{layer.name}_ib-{index}" in nodes:
            return layer.get_output_at(index)
    return layer.output


def add_head(extractor: Any, num_classes: int, dropout: float = 0.2,
             prefix: str = "head") -> Any:
    """``extractor`` + [global pooling] + dropout + dense + float32 softmax, as ONE flat model."""
    _, keras = load()
    features = extractor.output
    x = features
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_pool")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(x)
    x = keras.layers.Dense(num_classes, name=f"{prefix}_logits")(x)
    out = keras.layers.Activation("softmax", dtype="float32", name=f"{prefix}_softmax")(x)
    model = keras.Model(extractor.inputs, out, name=f"{extractor.name}_classifier")
    return flatten_model(model)


def head_model(model: Any, extractor: Any) -> Any:
    """The layers of ``model`` after ``extractor``'s output, as a model on feature vectors."""
    _, keras = load()
    inputs = keras.Input(extractor.output.shape[1:], name="features_in")
    extractor_layers = {layer.name for layer in extractor.layers}
    x = inputs
    for layer in model.layers:
        if layer.name not in extractor_layers:
            x = layer(x)
    return keras.Model(inputs, x, name="source_head")


def set_batchnorm(model: Any, momentum: float | None = None,
                  trainable: bool | None = None) -> int:
    """Set every BatchNormalization layer's momentum and/or trainability; return how many.

    keras.applications uses momentum 0.999: on a few hundred steps of small data the moving
    statistics stay far from the data, so training from scratch uses 0.9. A BatchNorm layer
    with ``trainable=False`` runs in inference mode (tf_keras), which fine-tuning wants.
    """
    _, keras = load()
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            if momentum is not None:
                layer.momentum = momentum
            if trainable is not None:
                layer.trainable = trainable
            count += 1
    return count


def has_batchnorm(model: Any) -> bool:
    """Whether ``model`` (flattened) has a BatchNormalization layer (VGG has none)."""
    _, keras = load()
    return any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in flatten_model(model).layers)


def recompute_batchnorm(model: Any, batches: Iterable[np.ndarray]) -> int:
    """Replace the moving statistics of every trainable BatchNorm layer of ``model`` by their
    average over ``batches`` (preprocessed images); return how many layers were updated.

    Moving statistics are an exponential average taken while the weights still change; after
    a short training from random weights (momentum 0.999 in keras.applications) they describe
    no data at all and the model evaluates at chance. One pass in training mode with the
    momentum set to a running mean (``i / (i + 1)`` at batch ``i``) gives each layer the mean
    and variance of its inputs under the final weights (as ``torch.optim.swa_utils.update_bn``).
    Frozen BatchNorm layers (``trainable=False``) run in inference mode and keep theirs.
    Dropout layers are off during the pass (as at inference): dropout in training mode
    inflates the variance the next layers see (EfficientNet's stochastic depth does so).
    """
    _, keras = load()
    layers = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not layers or not model.trainable:
        return 0
    momenta = [layer.momentum for layer in layers]
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    rates = [layer.rate for layer in dropouts]
    try:
        for layer in dropouts:
            layer.rate = 0
        for i, batch in enumerate(batches):
            for layer in layers:
                layer.momentum = i / (i + 1)
            model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, rates, strict=True):
            layer.rate = rate
    return len(layers)


def weight_layers(model: Any) -> list[Any]:
    """Layers that own weights, in graph order."""
    return [layer for layer in model.layers if layer.weights]




PIXEL_ADAPTER = "rgb_pixels_to_input"


def pixel_adapter(model: Any, preprocessing: Preprocessing) -> Any:
    """``model`` behind an input that takes RGB pixels 0..255 (float32, as any client feeds
    them): one fixed 1x1 convolution applies ``preprocessing`` (luma for a one-channel
    model, BGR order, mean and std: :meth:`Preprocessing.pixel_map`) inside the graph.

    The input keeps ``model``'s input name. ``model``'s layers (fake-quant wrappers of a QAT
    model included) are called again on the adapter's output in a flat model of the same name,
    so the converted graph's names are those of ``model`` (a nested call would prefix every
    tensor name with the wrapper's: measured +12 KB on the digits model's 90 KB ONNX int8).

    >>> from edge_transfer.core.preprocessing import Preprocessing
    >>> _, keras = load()
    >>> inner = keras.Sequential([keras.Input((4, 4, 1), name="image"), keras.layers.Flatten()])
    >>> outer = pixel_adapter(inner, Preprocessing(4, 4, channels=1, std=(255.0,)))
    >>> outer.input_names, outer.input_shape
    (['image'], (None, 4, 4, 3))
    >>> float(outer(np.full((1, 4, 4, 3), 255.0, np.float32)).numpy().max().round(5))
    1.0
    """
    _, keras = load()
    weights, bias = preprocessing.pixel_map()
    pixels = keras.Input((preprocessing.height, preprocessing.width, 3), dtype="float32",
                         name=str(model.input_names[0]))
    adapter = keras.layers.Conv2D(preprocessing.channels, 1, name=PIXEL_ADAPTER,
                                  trainable=False, dtype="float32")
    x = adapter(pixels)
    adapter.set_weights([weights.reshape(1, 1, 3, preprocessing.channels), bias])
    if not getattr(model, "_is_graph_network", False):   # subclassed: call it as one layer
        return keras.Model(pixels, model(x), name=f"{model.name}_rgb_pixels")
    return keras.Model(pixels, _call_flat(model, [x]), name=model.name)

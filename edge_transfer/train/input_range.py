"""Which pixel range a model takes, read from its own first layers: pixels are scaled once.

keras.applications models built with ``include_preprocessing`` (EfficientNet, EfficientNetV2,
MobileNetV3, ConvNeXt, RegNet, ResNetRS) and many users' models begin with ``Rescaling`` or
``Normalization`` layers (or ``x / 255`` written in the graph): they take 0..255 pixels.
Dividing by 255 before such a model too leaves its first convolution inputs in [0, 0.004]:
training-mode accuracy looks fine (BatchNorm's batch statistics amplify them), inference does
not. :func:`choose` decides what to feed a backbone (the model's own scaling layers, a record,
the registry, or ``--input-range``), and :class:`InputDecision` says it in one line and is
written into ``preprocessing.json`` (key ``input``).

>>> pre = preprocessing_for("unit", Preprocessing(height=8, width=8))
>>> (pre.mean, pre.std), describe(pre)
(((0.0,), (255.0,)), 'pixels / 255 (0..1)')
>>> describe(preprocessing_for("symmetric", pre))
'pixels / 127.5 - 1 (-1..1)'
>>> fraction(1 / 127.5)
'1/127.5'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edge_transfer.core.preprocessing import Preprocessing

INPUT_RANGES = ("auto", "raw", "unit", "symmetric")
# (mean, std) on 0..255 pixels for each range a model can be fed.
_RANGES: dict[str, tuple[float, float]] = {
    "raw": (0.0, 1.0), "unit": (0.0, 255.0), "symmetric": (127.5, 127.5)}
_TEXT = {"raw": "0..255", "unit": "pixels / 255 (0..1)",
         "symmetric": "pixels / 127.5 - 1 (-1..1)"}
OVERRIDE = "--input-range raw|unit|symmetric"
# What a model's first weighted layer sees for 0..255 pixels, narrower than this: scaled twice.
TINY_SPAN = 0.1
_ARITHMETIC = ("truediv", "divide", "multiply", "add", "subtract", "__operators__.add",
               "__operators__.sub")


@dataclass(frozen=True)
class InGraphScaling:
    """A model's leading scaling layers and what they make of 0..255 pixels."""

    layers: tuple[str, ...]        # "Rescaling 1/255", "Normalization", "tf.math.truediv"
    low: float                     # the smallest value the layers give for 0..255 pixels
    high: float                    # the largest

    def text(self) -> str:
        return " + ".join(self.layers)


@dataclass(frozen=True)
class InputDecision:
    """What a backbone is fed and why; ``warning``: pixels scaled twice, or an assumption."""

    feeding: str                   # "0..255", "pixels / 255 (0..1)", ...
    reason: str                    # model | registry | record | option | assumed
    source: str                    # the backbone (name, file or run)
    scaling: InGraphScaling | None = None
    sees: tuple[float, float] | None = None   # what the first weighted layer sees
    warning: str | None = None

    def line(self) -> str:
        """One line for the user, e.g. ``input: the model scales pixels itself (...)``."""
        if self.reason == "assumed":
            return (f"input: {self.source} has no scaling layer at its input; assumed it takes "
                    f"{self.feeding}; if it was trained on another range, pass {OVERRIDE}")
        why = {"record": f", as {self.source} says",
               "option": ", as --input-range says"}.get(self.reason, "")
        who = self.source if self.reason == "registry" else "the model"
        if self.scaling is None:
            return f"input: {who} takes {self.feeding}{why}"
        own = f"({self.scaling.text()})"
        if self.feeding == _TEXT["raw"]:
            return f"input: {who} scales pixels itself {own}: feeding {self.feeding}{why}"
        return f"input: feeding {self.feeding}{why}, and {who} scales them again {own}"

    def to_dict(self) -> dict[str, Any]:
        return {"feeding": self.feeding, "reason": self.reason, "line": self.line(),
                "model_scaling": list(self.scaling.layers) if self.scaling else [],
                "first_layer_sees": list(self.sees) if self.sees else None,
                "warning": self.warning}


def preprocessing_for(input_range: str, pre: Preprocessing) -> Preprocessing:
    """``pre`` (size, channels) feeding the pixel range ``input_range`` (raw|unit|symmetric)."""
    mean, std = _RANGES[input_range]
    return replace(pre, mean=(mean,), std=(std,), channel_order="rgb")


def describe(pre: Preprocessing) -> str:
    """What ``pre`` feeds a model, in words: ``'pixels / 255 (0..1)'``."""
    for name, (mean, std) in _RANGES.items():
        if pre.mean == (mean,) and pre.std == (std,) and pre.channel_order == "rgb":
            return _TEXT[name]
    low, high = _span(pre)
    order = ", BGR" if pre.channel_order == "bgr" else ""
    return (f"(pixels - mean {_values(pre.mean)}) / std {_values(pre.std)}{order} "
            f"({low:.3g}..{high:.3g})")


def _values(values: tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(values) == 1 else "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _span(pre: Preprocessing) -> tuple[float, float]:
    ends = [pre.normalize(np.full((1, 1, 1, pre.channels), v, np.uint8)) for v in (0, 255)]
    values = np.concatenate([e.ravel() for e in ends])
    return float(values.min()), float(values.max())


def fraction(scale: float) -> str:
    """``1/255`` for a scale whose inverse is a round number, else the scale itself."""
    if scale and abs(1 / scale - round(1 / scale, 1)) < 1e-3 * abs(1 / scale):
        return f"1/{round(1 / scale, 1):g}"
    return f"{scale:.4g}"


def read_scaling(model: Any) -> InGraphScaling | None:
    """The scaling layers at the start of ``model``'s (flattened) graph, or None.

    Follows the first input through a chain of ``Rescaling``, ``Normalization``, arithmetic
    on constants (``x / 255`` in a functional model: a ``TFOpLambda``) and ``Lambda`` layers,
    through nested models; the chain's effect on 0..255 pixels is measured, and a chain
    that is not a per-pixel affine map (a ``Lambda`` doing something else) counts as none.
    """
    from edge_transfer.train.models import flatten_model

    flat = flatten_model(model)
    chain, tensor = _leading_chain(flat)
    if not chain:
        return None
    ends = _measure(flat, tensor)
    if ends is None:
        return None
    return InGraphScaling(tuple(_name(layer) for layer in chain), *ends)


def _leading_chain(model: Any) -> tuple[list[Any], Any]:
    """The layers that take the model's first input one after another and only scale it."""
    from edge_transfer.core.keras import load

    tf, _ = load()
    consumers: dict[int, list[Any]] = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if not node.is_input:
                for tensor in tf.nest.flatten(node.input_tensors):
                    consumers.setdefault(id(tensor), []).append(node)
    chain: list[Any] = []
    tensor = model.inputs[0]
    while len(consumers.get(id(tensor), [])) == 1:
        node = consumers[id(tensor)][0]
        outputs = tf.nest.flatten(node.output_tensors)
        if len(tf.nest.flatten(node.input_tensors)) != 1 or len(outputs) != 1 or \
                not _scales(node.layer):
            break
        chain.append(node.layer)
        tensor = outputs[0]
    return chain, tensor


def _scales(layer: Any) -> bool:
    kind = type(layer).__name__
    if kind in ("Rescaling", "Normalization", "Lambda"):
        return True
    return kind == "TFOpLambda" and str(getattr(layer, "symbol", "")).endswith(_ARITHMETIC)


def _name(layer: Any) -> str:
    kind = type(layer).__name__
    if kind == "Rescaling":
        scale = np.ravel(np.asarray(layer.scale, dtype=np.float64))
        offset = np.ravel(np.asarray(layer.offset, dtype=np.float64))
        text = f"Rescaling {fraction(float(scale[0]))}" if scale.size == 1 else \
            "Rescaling per channel"
        if offset.size == 1 and float(offset[0]):
            text += f" {float(offset[0]):+g}".replace("+", "+ ").replace("-", "- ")
        return text
    if kind == "TFOpLambda":
        return f"tf.{layer.symbol}"
    return kind


def _measure(model: Any, tensor: Any) -> tuple[float, float] | None:
    """(lowest, highest) value the chain ending at ``tensor`` gives for 0..255 pixels; None
    when the chain is not affine per pixel (its output at 127.5 is not the middle)."""
    from edge_transfer.core.keras import load

    _, keras = load()
    probe = keras.Model(model.inputs[0], tensor)
    shape = [d if d else 8 for d in model.inputs[0].shape[1:]]
    x = np.stack([np.full(shape, v, np.float32) for v in (0.0, 127.5, 255.0)])
    out = np.asarray(probe(x, training=False), dtype=np.float64).reshape(3, -1)
    if not np.all(np.isfinite(out)):
        return None
    middle = (out[0] + out[2]) / 2
    if not np.allclose(out[1], middle, rtol=1e-3, atol=1e-4 * (np.abs(out).max() + 1)):
        return None
    return float(np.min(out[[0, 2]])), float(np.max(out[[0, 2]]))


def first_layer_sees(pre: Preprocessing, scaling: InGraphScaling | None) -> tuple[float, float]:
    """The range the model's first weighted layer sees for 0..255 pixels fed through ``pre``
    and then the model's own ``scaling`` (an affine map of 0..255 to its low..high)."""
    low, high = _span(pre)
    if scaling is None:
        return low, high
    ends = [scaling.low + (v / 255.0) * (scaling.high - scaling.low) for v in (low, high)]
    return min(ends), max(ends)


def _twice(pre: Preprocessing, scaling: InGraphScaling | None, fix: str) -> str | None:
    """The warning when ``pre`` scales pixels and the model scales them again, so that its
    first weighted layer sees a range narrower than :data:`TINY_SPAN`."""
    if scaling is None:
        return None
    low, high = first_layer_sees(pre, scaling)
    if high - low >= TINY_SPAN:
        return None
    return (f"pixels are scaled twice: {describe(pre)} is fed and the model scales them "
            f"again ({scaling.text()}), so its first layers see {low:.3g}..{high:.3g}; {fix}")


def choose(model: Any, default: Preprocessing, reason: str, source: str,
           input_range: str = "auto") -> tuple[Preprocessing, InputDecision]:
    """What to feed ``model``: its own scaling layers first (0..255 when it has them), else
    ``default`` (``reason``: registry, record or assumed); ``--input-range`` overrides both.

    A record (``reason="record"``: a run's or a file's ``preprocessing.json``) is kept as it
    is: the model was trained so; pixels scaled twice get a warning naming the fix.
    """
    scaling = read_scaling(model)
    if input_range != "auto":
        pre = preprocessing_for(input_range, default)
        fix = "pass --input-range raw to feed 0..255"
        reason_now = "option"
    elif reason == "record":
        pre = default
        fix = ("if the model was not trained on such inputs, pass --input-range raw; a run "
               "trained so learned from near-constant inputs: train it again (this version "
               "feeds such a model 0..255)")
        reason_now = "record"
    elif scaling is not None:
        pre, reason_now, fix = preprocessing_for("raw", default), (
            "registry" if reason == "registry" else "model"), ""
    else:
        pre, reason_now, fix = default, reason, ""
    decision = InputDecision(describe(pre), reason_now, source, scaling,
                             first_layer_sees(pre, scaling), _twice(pre, scaling, fix))
    return pre, decision

"""What a per-layer quantization diagnosis measures, shared by the TFLite and ONNX debuggers.

Errors are *relative*: the RMS of (quantized - float) over the RMS of the float values, so
0.01 is 1 % noise and 1.0 means the signal is gone. Per channel (last axis) where the
layout is known, the median over channels is taken too, so one outlier channel cannot hide
that all the others were crushed.

Each format's per-layer quantizer (``quantizer`` of the :class:`exporters.Exporter`
protocol) returns a :class:`Quantizer`; it groups its tensor errors by Keras layer and reads
each layer (:func:`by_layer`, :func:`reading`) here, the same for every format. The layer
records are :class:`~edge_transfer.core.records.LayerDiagnosis` (``diagnose.json``).

>>> f = np.array([[1.0, 2.0], [3.0, 4.0]])
>>> round(relative_error(f, f + 0.1), 4)
0.0382
>>> relative_error(f, f)
0.0
>>> layer_of("model/conv2/Relu;model/conv2/BiasAdd;model/conv2/Conv2D")
'conv2'
>>> layer_of("StatefulPartitionedCall:0")
'StatefulPartitionedCall:0'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_transfer.core.records.diagnose import LayerDiagnosis

# Below this signal (relative to the tensor's largest channel) a channel counts as dead.
_DEAD = 1e-6


@dataclass(frozen=True)
class TensorError:
    """The error of one quantized tensor (the output of one op of the converted graph).

    ``node`` is what the converter can keep in float (a TFLite output tensor name, an ONNX
    node name); ``layer`` the Keras layer it came from; ``local`` the error the op adds given
    quantized inputs; ``cumulative`` the error built up by its output against the float
    model; ``channel_spread`` the widest channel's range over the median channel's.
    """

    node: str
    layer: str
    op_type: str
    local: float
    cumulative: float
    value_range: float
    channel_spread: float | None = None


def relative_error(reference: np.ndarray, quantized: np.ndarray,
                   channels_last: bool = True) -> float:
    """max(overall, median-per-channel) relative RMS error of ``quantized`` vs ``reference``."""
    ref = np.asarray(reference, np.float64)
    noise = np.asarray(quantized, np.float64) - ref
    signal_power = float(np.mean(ref**2))
    if signal_power <= 0.0:
        return 0.0 if not np.any(noise) else 1.0
    overall = math.sqrt(float(np.mean(noise**2)) / signal_power)
    if not channels_last or ref.ndim < 2 or ref.shape[-1] < 2:
        return overall
    ref_c = ref.reshape(-1, ref.shape[-1])
    noise_c = noise.reshape(-1, ref.shape[-1])
    power = np.mean(ref_c**2, axis=0)
    live = power > _DEAD * power.max()
    per_channel = np.sqrt(np.mean(noise_c**2, axis=0)[live] / power[live])
    return max(overall, float(np.median(per_channel)))


def channel_spread(reference: np.ndarray) -> float | None:
    """The widest live channel's max |value| over the median live channel's (channels last)."""
    ref = np.abs(np.asarray(reference, np.float64))
    if ref.ndim < 2 or ref.shape[-1] < 2:
        return None
    peaks = ref.reshape(-1, ref.shape[-1]).max(axis=0)
    live = peaks[peaks > _DEAD * max(float(peaks.max()), 1e-30)]
    if len(live) < 2:
        return None
    return float(live.max() / np.median(live))


def added_error(output: float, inputs: list[float]) -> float:
    """The error an op adds: its output's over the worst of its inputs', as noise powers,
    discounted by the share of the signal already lost upstream (noise and signal are no
    longer independent there, and a layer cannot lose what is already gone).

    >>> round(added_error(0.99, [0.006]), 3), round(added_error(1.0, [0.9]), 3)
    (0.984, 0.044)
    """
    worst = max(inputs, default=0.0)
    return math.sqrt(max(0.0, output**2 - worst**2)) * max(0.0, 1.0 - min(worst, 1.0))


def layer_of(name: str) -> str:
    """The Keras layer of a converted tensor or node name (``model/<layer>/...``)."""
    first = name.split(";")[0]
    parts = [p for p in first.split("/") if p]
    return parts[1] if len(parts) >= 3 else name


def unknown_names(names: list[str], layers: list[str], op_types: list[str]) -> str:
    """The message for ``--keep-float`` names that match no layer or op type."""
    return (f"--keep-float {', '.join(names)} matches no layer or op type of this model; "
            f"layers: {', '.join(layers[:12])}{' ...' if len(layers) > 12 else ''}; op types: "
            f"{', '.join(sorted(set(op_types)))} (or run `edge-transfer diagnose` to see "
            "which layers quantize badly)")


@dataclass(frozen=True, eq=False)
class Quantizer:
    """One format's int8 of one calibration: re-quantize it keeping layers in float (cheap),
    run a quantized model, and measure the per-layer errors (the costly part, on demand).
    What ``exporters.get(fmt).quantizer(...)`` returns, for ``diagnose`` and
    ``--keep-float auto``."""

    fmt: str
    quantize: Callable[[tuple[str, ...]], Any]  # layer names -> model (bytes or onnx proto)
    serialize: Callable[[Any], bytes]           # a quantized model as its file's bytes
    _measure: Callable[[np.ndarray, Any], tuple[LayerDiagnosis, ...]]

    def size(self, model: Any) -> int:
        """The bytes of a quantized model's file."""
        return len(self.serialize(model))

    def measure(self, x: np.ndarray, int8: Any | None = None) -> tuple[LayerDiagnosis, ...]:
        """Per-layer local and cumulative int8 error on ``x``, in graph order (``int8``: the
        plain int8 model, when it is already made)."""
        return self._measure(x, int8)


def by_layer(errors: list[TensorError], nodes: Callable[[str], list[str]],
             op_types: Callable[[str], list[str]], weights: Callable[[list[str]], int],
             keras_model: Any | None) -> tuple[LayerDiagnosis, ...]:
    """Group tensor errors by Keras layer (graph order), read each one: ``nodes`` of a
    layer, their ``op_types`` and ``weights`` come from the format's calibrated graph;
    ``keras_model`` (if given) lets a reading name weights that int8 rounds to zero."""
    groups: dict[str, list[TensorError]] = {}
    for error in errors:
        if not nodes(error.layer):     # graph inputs/outputs that belong to no layer
            continue
        groups.setdefault(error.layer, []).append(error)
    names = list(groups)
    ranges = [max(e.value_range for e in groups[n]) for n in names]
    out = []
    for depth, name in enumerate(names):
        group = groups[name]
        local = max(_finite(e.local) for e in group)
        cumulative = _finite(group[-1].cumulative)
        neighbours = [ranges[k] for k in (depth - 1, depth + 1) if 0 <= k < len(names)]
        spread = max((e.channel_spread or 0.0) for e in group)
        kinds = list(dict.fromkeys(op_types(name)))
        out.append(LayerDiagnosis(
            layer=name, op_type="+".join(kinds) or group[0].op_type, depth=depth,
            local=round(local, 6), cumulative=round(cumulative, 6),
            reading=reading(local=local, cumulative=cumulative, channel_spread=spread,
                            range_ratio=(ranges[depth] / max(float(np.median(neighbours)),
                                                             1e-12) if neighbours else 1.0),
                            weights=_kernel(keras_model, name)),
            nodes=tuple(nodes(name)), weights=weights(nodes(name))))
    return tuple(out)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _kernel(model: Any | None, layer: str) -> np.ndarray | None:
    if model is None:
        return None
    try:
        weights = model.get_layer(layer).get_weights()
    except (ValueError, AttributeError):
        return None
    return weights[0] if weights and np.ndim(weights[0]) >= 2 else None


def zeroed_weights(kernel: np.ndarray) -> tuple[float, float]:
    """(fraction of weights int8 per-output-channel rounding sends to 0, largest |w| over
    the median |w|) of a kernel whose last axis is the output channel.

    >>> k = np.full((3, 3, 4, 2), 0.1); k[0, 0, 0, :] = 100.0
    >>> zeroed, ratio = zeroed_weights(k)
    >>> round(zeroed, 3), round(ratio)
    (0.972, 1000)
    """
    w = np.abs(np.asarray(kernel, np.float64)).reshape(-1, np.shape(kernel)[-1])
    scale = w.max(axis=0) / 127.0
    zeroed = float(np.mean(w < 0.5 * np.where(scale > 0, scale, np.inf)))
    nonzero = w[w > 0]
    ratio = float(w.max() / np.median(nonzero)) if nonzero.size else 1.0
    return zeroed, ratio


def reading(*, local: float, cumulative: float, channel_spread: float = 0.0,
            range_ratio: float = 1.0, weights: np.ndarray | None = None) -> str:
    """One line saying why a layer's error is what it is.

    >>> reading(local=0.4, cumulative=0.4, range_ratio=40.0)
    'activation range 40x wider than its neighbours: its int8 steps are coarse'
    >>> reading(local=0.01, cumulative=0.6)
    'adds 1% itself; 60% arrives from earlier layers'
    """
    if weights is not None:
        zeroed, ratio = zeroed_weights(weights)
        if zeroed > 0.3 and local > 0.05:
            return (f"int8 rounds {zeroed:.0%} of its weights to zero "
                    f"(largest weight {ratio:.0f}x the median)")
    if channel_spread > 20 and local > 0.05:
        return (f"one channel's range is {channel_spread:.0f}x the median channel's: "
                "the others get few int8 steps")
    if range_ratio > 10 and local > 0.05:
        return (f"activation range {range_ratio:.0f}x wider than its neighbours: "
                "its int8 steps are coarse")
    if local > 0.1:
        return f"adds {local:.0%} error by itself (rounding of its weights or output)"
    if cumulative > 0.1 and cumulative > 3 * local:
        return f"adds {local:.0%} itself; {cumulative:.0%} arrives from earlier layers"
    return "rounding noise only"

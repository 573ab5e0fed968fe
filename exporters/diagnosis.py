"""What a per-layer quantization diagnosis measures, shared by the TFLite and ONNX debuggers.

Errors are *relative*: the RMS of (quantized - float) over the RMS of the float values, so
0.01 is 1 % noise and 1.0 means the signal is gone. Per channel (last axis) where the
layout is known, the median over channels is taken too, so one outlier channel cannot hide
that all the others were crushed.

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
from dataclasses import dataclass

import numpy as np

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

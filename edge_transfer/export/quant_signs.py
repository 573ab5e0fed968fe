"""What the shape of a quantization diagnosis says about its cause, in one line each.

Three signs (:func:`signs`), read from the per-layer errors of
:mod:`edge_transfer.export.diagnose` and the float ranges of the model's first layers:

- **a range int8 cannot resolve**: a tensor near the input whose values sit in a narrow band
  far from 0 (``[-1, -0.992]``: pixels divided by 255 before a model that scales them itself)
  spans only a few of int8's 255 steps, since int8's range must include 0. The likely cause
  is a wrong input range, not a layer that quantizes badly.
- **a tiny range**: such a tensor whose values all lie within ``TINY_SPAN`` (``[0, 0.004]``).
- **the first layers carry the error**: most of the noise is added within the first few
  layers, and the worst of them has no cause of its own (no zeroed weights, no outlier
  channel): again the input, its scaling or preprocessing.
- **the error is spread over the whole network**: half of the noise takes many layers; no
  small set of float layers (``--keep-float``) can repair it: fix the cause, or use QAT.

>>> int8_steps(-1.0, -0.992)
2.04
>>> int8_steps(0.0, 6.0)
255.0
>>> from edge_transfer.core.records.diagnose import LayerDiagnosis
>>> def la(name, depth, local):
...     return LayerDiagnosis(name, "CONV_2D", depth, local, local, "")
>>> even = [la(f"conv{k}", k, 0.1) for k in range(40)]
>>> print(signs(even)[0])  # doctest: +NORMALIZE_WHITESPACE
the error is spread over the whole network: its 20 worst of 40 layers add only half of the
noise, so no small set of float layers can repair it (--keep-float would keep most of the
model in float); look for its cause (the input range, preprocessing.json) or export with --qat
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_transfer.core.records.diagnose import LayerDiagnosis

FEW_STEPS = 16          # a tensor spanning fewer int8 steps than this has lost its signal
TINY_SPAN = 0.01        # an early tensor narrower than this: pixels scaled twice (1/255 = 0.004)
EARLY_LAYERS = 3        # "the first layers": this many, or EARLY_DEPTH of the depth
EARLY_DEPTH = 0.1
EARLY_SHARE = 0.5       # of the noise power added within the first layers
SPREAD_LAYERS = 5       # half the noise needs more layers than this and than SPREAD_SHARE
SPREAD_SHARE = 0.2      # of the layers that add error
FIRST_TENSORS = 6       # float ranges read for the input and this many first layers
INPUT_FIX = ("train again with the input range the model expects (pretrain / finetune "
             "--input-range raw|unit|symmetric: a model that scales pixels itself takes "
             "0..255), or correct mean and std in the run's preprocessing.json")


@dataclass(frozen=True)
class TensorRange:
    """The float values of one tensor on the measured images."""

    name: str
    low: float
    high: float

    @property
    def steps(self) -> float:
        return int8_steps(self.low, self.high)


def int8_steps(low: float, high: float) -> float:
    """How many of int8's 255 steps values in ``[low, high]`` span, the int8 range being
    stretched to include 0 (as TFLite and ONNX Runtime calibrate)."""
    span = max(high, 0.0) - min(low, 0.0)
    return round(255.0 * (high - low) / span, 2) if span > 0 else 255.0


def first_ranges(model: Any, x: np.ndarray, count: int = FIRST_TENSORS) -> list[TensorRange]:
    """The float range of the model's input and of its first ``count`` layers' outputs on
    ``x`` (a Keras functional or Sequential model; TensorFlow is loaded)."""
    from edge_transfer.core.keras import load

    _, keras = load()
    layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    layers = [la for la in layers[:count] if not isinstance(la.output, list)]
    out = [TensorRange("the input", float(np.min(x)), float(np.max(x)))]
    if not layers:
        return out
    probe = keras.Model(model.inputs, [la.output for la in layers])
    values = probe.predict(x, verbose=0, batch_size=64)
    values = values if isinstance(values, list) else [values]
    return out + [TensorRange(la.name, float(np.min(v)), float(np.max(v)))
                  for la, v in zip(layers, values, strict=True)]


def signs(layers: Sequence[LayerDiagnosis], ranges: Sequence[TensorRange] = ()
          ) -> tuple[str, ...]:
    """The signs of the module docstring that this diagnosis shows (``layers`` in graph
    order), most telling first."""
    out = [line for line in (_narrow(ranges), _early(layers), _spread(layers)) if line]
    return tuple(out)


def _narrow(ranges: Sequence[TensorRange]) -> str | None:
    for r in ranges:
        if r.high <= r.low:
            continue
        if r.steps < FEW_STEPS:
            what = (f"spans only {r.steps:.0f} of int8's 255 steps (values in [{r.low:.4g}, "
                    f"{r.high:.4g}], a narrow band far from 0): its signal is lost at the first "
                    "quantization")
        elif r.high - r.low < TINY_SPAN:
            what = (f"has a tiny range (values in [{r.low:.4g}, {r.high:.4g}]) where pixels "
                    "usually span 0..1 or more")
        else:
            continue
        return (f"{r.name} {what}; the likely cause is a wrong input range (pixels scaled "
                "twice when the model scales them itself), not a layer that quantizes badly: "
                f"{INPUT_FIX}")
    return None


def _power(layers: Sequence[LayerDiagnosis]) -> np.ndarray:
    return np.array([max(la.local, 0.0) ** 2 for la in layers])


def _early(layers: Sequence[LayerDiagnosis]) -> str | None:
    power = _power(layers)
    total = float(power.sum())
    first = max(EARLY_LAYERS, int(EARLY_DEPTH * len(layers)))
    if total <= 0 or len(layers) <= first or max(la.local for la in layers) < 0.1:
        return None
    share = float(power[:first].sum()) / total
    if share < EARLY_SHARE:
        return None
    worst = max(layers[:first], key=lambda la: la.local)
    if not worst.reading.startswith(("adds", "rounding")):
        return None     # its reading names a cause of its own (zeroed weights, an outlier)
    names = ", ".join(la.layer for la in layers[:first])
    return (f"the first {first} layers ({names}) add {share:.0%} of the error: a sign of the "
            f"input (its range, scaling or preprocessing) more than of those layers; check it "
            f"before keeping them in float: {INPUT_FIX}")


def _spread(layers: Sequence[LayerDiagnosis]) -> str | None:
    power = np.sort(_power(layers))[::-1]
    adding = int(np.sum(power > 0))
    total = float(power.sum())
    if total <= 0 or max(la.local for la in layers) < 0.05:
        return None
    half = int(np.searchsorted(np.cumsum(power), 0.5 * total - 1e-12) + 1)
    if half <= max(SPREAD_LAYERS, SPREAD_SHARE * adding):
        return None
    return (f"the error is spread over the whole network: its {half} worst of {adding} layers "
            "add only half of the noise, so no small set of float layers can repair it "
            "(--keep-float would keep most of the model in float); look for its cause (the "
            "input range, preprocessing.json) or export with --qat")

"""``--keep-float auto``: the fewest layers to leave in float so int8 stays within budget.

The layers are ranked by the error each adds under int8 (:mod:`edge_transfer.diagnose`),
then the most harmful 1, 2, 3, 5, 8, 13, ... are kept in float, one re-quantization of the
same calibration per try, until accuracy on the validation split is within the budget of
the float model's; at most ``conversions`` tries (the search stops at the first that fits).
The ranking is measured on ``MEASURE_SAMPLES`` validation images; each try's accuracy on a
fixed stratified sample of at most ``SEARCH_SAMPLES`` (the whole split when smaller), read
a batch at a time, so memory stays flat on large data.

>>> sizes(6, 40)
[1, 2, 3, 5, 8, 13]
>>> sizes(6, 4)
[1, 2, 3, 4]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np

from edge_transfer.diagnose import measure, quiet, ranked

MAX_CONVERSIONS = 6          # the --keep-float-conversions default (stated in --help)
MEASURE_SAMPLES = 64         # validation images the per-layer errors are measured on
SEARCH_SAMPLES = 2000        # validation images (at most) each try is judged on (in --help)


class Batches(Protocol):
    """Labelled images read a batch at a time (``export.CheckData``)."""

    @property
    def y(self) -> np.ndarray: ...

    def predict(self, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray: ...


def sizes(conversions: int, candidates: int) -> list[int]:
    """How many layers each try keeps in float: Fibonacci steps, capped by the candidates."""
    out: list[int] = []
    a, b = 1, 2
    while len(out) < conversions and (not out or out[-1] < candidates):
        out.append(min(a, candidates))
        a, b = b, a + b
    return out


@dataclass(frozen=True)
class Choice:
    """What the search kept in float, what it reached, and every try (layers, accuracy)."""

    layers: tuple[str, ...]
    accuracy: float
    within_budget: bool
    tries: tuple[tuple[int, float], ...]
    ranking: tuple[str, ...]

    def notes(self, float_accuracy: float, max_drop: float) -> tuple[str, ...]:
        tried = ", ".join(f"{n} layer(s) -> {acc:.4f}" for n, acc in self.tries)
        verdict = ("within" if self.within_budget else "still not within")
        return (f"--keep-float auto kept {len(self.layers)} layer(s) in float "
                f"({', '.join(self.layers) or 'none'}), {verdict} {max_drop:.3f} of float "
                f"{float_accuracy:.4f}; tries: {tried}",)


def choose(fmt: str, source: Any, calibration: Any, x_measure: np.ndarray, data: Batches, *,
           float_accuracy: float, max_drop: float, conversions: int = MAX_CONVERSIONS,
           opset: int = 17, keras_model: Any | None = None) -> Choice:
    """Greedy over the sensitivities measured on ``x_measure``, each try judged on ``data``
    against ``float_accuracy`` (the float model's on the same ``data``); see the module
    docstring."""
    with quiet():
        measured = measure(fmt, source, calibration, x_measure, opset=opset,
                           keras_model=keras_model)
    ranking = tuple(la.layer for la in ranked(measured.layers) if la.local > 0)
    tries: list[tuple[int, float]] = []
    best: tuple[float, tuple[str, ...]] = (-1.0, ())
    for n in sizes(conversions, len(ranking)):
        layers = ranking[:n]
        with quiet():
            outputs = data.predict(partial(measured.predict, measured.quantize(layers)))
        accuracy = float(np.mean(outputs.argmax(1) == data.y))
        tries.append((n, accuracy))
        if accuracy > best[0]:
            best = (accuracy, layers)
        if accuracy >= float_accuracy - max_drop - 1e-9:
            return Choice(layers, accuracy, True, tuple(tries), ranking)
    return Choice(best[1], best[0], False, tuple(tries), ranking)

"""``--keep-float auto``: the fewest layers, and float bytes, that bring int8 within budget.

Every try is one re-quantization of the same calibration, judged on a fixed stratified
sample of at most ``SEARCH_SAMPLES`` validation images, paired image by image with the float
model (:mod:`edge_transfer.core.stats`). *Within budget*: the drop from float is at most
``max_drop`` and not significantly below float (exact McNemar at ``alpha``; rule ``point``:
the drop alone).

1. Plain int8 first. When it is within budget no layer is kept, and the per-layer errors
   are never measured.
2. Else the per-layer errors are measured on ``MEASURE_SAMPLES`` images
   (:mod:`edge_transfer.export.diagnose`) and the layers are ranked by the noise each adds (its
   relative error squared: noise powers add up through the network) per byte keeping it in
   float costs: 3 more bytes per weight value (float32 instead of int8), and at least
   ``MIN_COST`` of the int8 file per layer, so that weightless layers are not taken for free
   on rounding noise alone. Down that ranking, a layer that would take the file past the
   byte cap (``max_bytes`` times plain int8's) is passed over.
3. The first 1, 2, 3, 5, 8, ... layers of that ranking are tried until one is within budget:
   at most ``conversions`` tries in all, plain int8 included. A try whose file comes out past
   the cap ends the search unjudged.

When no try is within budget, the most accurate one is kept if it is significantly better
than plain int8 on the same images, else plain int8 (no layer is kept for noise).

>>> sizes(6, 40)
[1, 2, 3, 5, 8, 13]
>>> sizes(6, 4)
[1, 2, 3, 4]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_transfer.core import stats
from edge_transfer.core.records.diagnose import LayerDiagnosis
from edge_transfer.core.records.export import KeepFloatSearch, KeepFloatTry
from edge_transfer.core.records.paired import Comparison
from edge_transfer.export.config import MAX_BYTES, MAX_CONVERSIONS
from edge_transfer.export.diagnose import Sample, quiet
from edge_transfer.export.quant_signs import TensorRange, signs
from exporters import Quantizer

MEASURE_SAMPLES = 64         # validation images the per-layer errors are measured on
SEARCH_SAMPLES = 2000        # validation images (at most) each try is judged on (in --help)
FLOAT_EXTRA = 3              # bytes a weight value costs more in float32 than in int8
MIN_COST = 0.01              # the least a layer kept in float counts: this share of int8
METADATA_SLACK = 16 * 1024   # bytes a written file may carry beyond the search's model


def sizes(conversions: int, candidates: int) -> list[int]:
    """How many layers each try keeps in float: Fibonacci steps, capped by the candidates."""
    out: list[int] = []
    a, b = 1, 2
    while len(out) < conversions and (not out or out[-1] < candidates):
        out.append(min(a, candidates))
        a, b = b, a + b
    return out


def within_budget(comparison: stats.Paired, max_drop: float, alpha: float = 0.05,
                  rule: stats.Rule = "significant") -> bool:
    """Whether a try is close enough to float: its drop at most ``max_drop`` and (rule
    ``significant``) not significantly below float at ``alpha`` (:func:`stats.decide`).

    >>> one_lost = stats.paired_counts(130, 1, 0, 3)           # -0.7 pt on 134 images
    >>> within_budget(one_lost, 0.05)
    True
    >>> lost_60 = stats.paired_counts(1900, 60, 0, 40)         # -3 pt on 2,000 images
    >>> within_budget(lost_60, 0.05), within_budget(lost_60, 0.05, rule="point")
    (False, True)
    """
    near = stats.decide(comparison, max_drop, alpha, rule="point").verdict == "pass"
    if rule == "point":
        return near
    return near and stats.decide(comparison, 0.0, alpha).verdict == "pass"


def float_cost(layer: LayerDiagnosis) -> int:
    """The bytes keeping ``layer`` in float adds to the int8 file (its weights in float32)."""
    return FLOAT_EXTRA * layer.weights


def ranking(layers: Sequence[LayerDiagnosis], int8_bytes: int) -> list[LayerDiagnosis]:
    """The layers that add error, most noise removed per float byte first.

    >>> def la(name, local, weights):
    ...     return LayerDiagnosis(name, "CONV_2D", 0, local, local, "", weights=weights)
    >>> big, small, relu = la("big", 0.30, 40_000), la("small", 0.25, 2_000), la("relu", 0.02, 0)
    >>> [x.layer for x in ranking([big, small, relu], int8_bytes=100_000)]
    ['small', 'big', 'relu']
    """
    floor = max(1.0, MIN_COST * int8_bytes)
    return sorted((la for la in layers if la.local > 0),
                  key=lambda la: (-la.local ** 2 / max(float(float_cost(la)), floor), la.depth))


def affordable(ranked: Sequence[LayerDiagnosis], int8_bytes: int,
               cap: float) -> tuple[str, ...]:
    """Down ``ranked``, the layers that still fit under ``cap`` bytes with those before.

    >>> def la(name, weights):
    ...     return LayerDiagnosis(name, "CONV_2D", 0, 0.5, 0.5, "", weights=weights)
    >>> affordable([la("a", 50), la("huge", 10_000), la("b", 50)], 1_000, cap=1_500)
    ('a', 'b')
    """
    kept, total = [], float(int8_bytes)
    for la in ranked:
        if total + float_cost(la) <= cap:
            kept.append(la.layer)
            total += float_cost(la)
    return tuple(kept)


@dataclass(frozen=True, eq=False)
class _Judged:
    """One try: the layers it kept, its record, whether it is within budget, and which
    images it got right."""

    layers: tuple[str, ...]
    outcome: KeepFloatTry
    ok: bool
    correct: np.ndarray


def _pick(judged: Sequence[_Judged], alpha: float, rule: stats.Rule) -> _Judged:
    """The first try within budget (the fewest layers); else the most accurate try that is
    significantly better than plain int8 (the first try) on the same images (rule
    ``point``: the most accurate, fewest layers on a tie); else plain int8, so that no
    layer is kept for a difference the images cannot tell from noise.

    >>> def tried(layers, right):     # one more image right than plain int8, of 100
    ...     outcome = KeepFloatTry(len(layers), 100, right / 100, Comparison(100, 0, 0, 0, 1, 0, 0))
    ...     return _Judged(layers, outcome, False, np.arange(100) < right)
    >>> int8, one_more = tried((), 90), tried(("conv2",), 91)
    >>> [_pick([int8, one_more], 0.05, rule).layers for rule in ("significant", "point")]
    [(), ('conv2',)]
    """
    passed = [j for j in judged if j.ok]
    if passed:
        return passed[0]
    best = max(judged, key=lambda j: (j.outcome.accuracy, -j.outcome.layers))
    if rule == "point":
        return best
    better = stats.paired(judged[0].correct, best.correct)
    return best if better.difference > 0 and better.p_value < alpha else judged[0]


@dataclass(frozen=True)
class Choice:
    """The layers the search kept in float, and how it got there (``export.json``)."""

    layers: tuple[str, ...]
    search: KeepFloatSearch
    ranking: tuple[str, ...] = ()
    # what the measured errors say (edge_transfer.export.quant_signs)
    signs: tuple[str, ...] = ()

    def notes(self, max_drop: float, rule: stats.Rule = "significant") -> tuple[str, ...]:
        """One line for the variant's notes: what was kept, at what size, every try."""
        s = self.search
        kept = ", ".join(self.layers) or (
            "none: no layer needed, this file is plain int8" if s.within_budget else
            "none: no try was significantly better, this file is plain int8")
        budget = (f"within {max_drop:.3f} of float {s.float_accuracy:.4f}"
                  + (" and not significantly below it" if rule == "significant" else ""))
        verdict = budget if s.within_budget else f"no try was {budget}"
        def p(value: float) -> str:
            text = stats.format_p(value)
            return f"p{text}" if text.startswith("<") else f"p={text}"

        tries = ", ".join(f"{t.layers} -> {t.accuracy:.4f} ({t.vs_float.difference * 100:+.1f}"
                          f" pt, {p(t.vs_float.p_value)}, {t.bytes / s.int8_bytes:.2f}x)"
                          for t in s.tries)
        return (f"--keep-float auto kept {len(self.layers)} layer(s) in float ({kept}); "
                f"{s.bytes_ratio:.2f}x the plain int8 bytes (cap {s.max_bytes_ratio:g}x); "
                f"{verdict} on {s.samples} validation images; {s.conversions} conversion(s), "
                f"layers -> accuracy: {tries}; stopped: {s.stopped}",
                *(f"--keep-float auto: {sign}" for sign in self.signs))


@dataclass(frozen=True, eq=False)
class _Tries:
    """The tries of one search, each judged on ``sample`` paired with float, in order."""

    quantizer: Quantizer
    sample: Sample
    max_drop: float
    alpha: float
    rule: stats.Rule
    judged: list[_Judged] = field(default_factory=list)

    def attempt(self, layers: tuple[str, ...], model: Any) -> bool:
        """Judge ``model`` (``layers`` kept in float); whether it is within budget."""
        correct = self.sample.correct(self.quantizer, model)
        comparison = stats.paired(self.sample.float_correct, correct)
        done = KeepFloatTry(layers=len(layers), bytes=self.quantizer.size(model),
                            accuracy=float(np.mean(correct)), vs_float=Comparison.of(comparison))
        ok = within_budget(comparison, self.max_drop, self.alpha, self.rule)
        self.judged.append(_Judged(layers, done, ok, correct))
        return ok


@dataclass(frozen=True)
class _Stop:
    """How a search ended: why, the option that bounded it (if one did), the layers it
    ranked and could afford, the signs of the measured errors, whether they were measured,
    and the conversions made."""

    stopped: str
    limit: str | None = None
    order: tuple[str, ...] = ()
    found: tuple[str, ...] = ()
    measured: bool = False
    made: int = 1


def choose(quantizer: Quantizer, sample: Sample, *, max_drop: float, alpha: float = 0.05,
           rule: stats.Rule = "significant", conversions: int = MAX_CONVERSIONS,
           max_bytes: float = MAX_BYTES, ranges: Sequence[TensorRange] = ()) -> Choice:
    """The search of the module docstring, on ``sample``
    (:func:`edge_transfer.export.diagnose.validation_sample`); with the per-layer errors measured,
    the choice also carries their signs (:func:`edge_transfer.export.quant_signs.signs`, with the
    first layers' float ``ranges``)."""
    tries = _Tries(quantizer, sample, max_drop, alpha, rule)
    with quiet():
        int8 = quantizer.quantize(())
    int8_bytes = quantizer.size(int8)
    if tries.attempt((), int8):
        stop = _Stop("plain int8 is within the budget: no layer needed")
    elif conversions < 2:
        stop = _Stop("--keep-float-conversions 1 allows plain int8 only", "conversions")
    else:
        stop = _search(tries, int8, int8_bytes, conversions, max_bytes, ranges)
    chosen = _pick(tries.judged, alpha, rule)
    search = KeepFloatSearch(
        samples=len(sample.float_correct), float_accuracy=sample.float_accuracy,
        int8_bytes=int8_bytes, max_bytes_ratio=max_bytes,
        bytes_ratio=round(chosen.outcome.bytes / int8_bytes, 4), conversions=stop.made,
        measured=stop.measured, within_budget=chosen.ok, stopped=stop.stopped,
        tries=tuple(j.outcome for j in tries.judged), limit=None if chosen.ok else stop.limit)
    return Choice(chosen.layers, search, stop.order, stop.found)


def _search(tries: _Tries, int8: Any, int8_bytes: int, conversions: int, max_bytes: float,
            ranges: Sequence[TensorRange]) -> _Stop:
    """Steps 2 and 3 of the module docstring, after plain int8 was not within budget."""
    with quiet():
        layers = tries.quantizer.measure(tries.sample.x_measure, int8)
    found = signs(layers, ranges)
    ranked = ranking(layers, int8_bytes)
    order = affordable(ranked, int8_bytes, max_bytes * int8_bytes)
    if not order:
        stopped = ("no layer adds measurable error" if not ranked else
                   f"every layer that adds error would take the file past {max_bytes:g}x int8")
        return _Stop(stopped, "max_bytes" if ranked else None, order, found, measured=True)
    stopped, limit, made = _try_layers(tries, order, int8_bytes, conversions, max_bytes,
                                       passed_over=len(ranked) - len(order))
    return _Stop(stopped, limit, order, found, measured=True, made=made)


def _try_layers(tries: _Tries, order: tuple[str, ...], int8_bytes: int, conversions: int,
                max_bytes: float, passed_over: int) -> tuple[str, str | None, int]:
    """Keep the first 1, 2, 3, 5, ... layers of ``order`` in float until a try is within
    budget: (why it stopped, the option that bounded it, the conversions made in all)."""
    cap = max_bytes * int8_bytes
    over = (f"; {passed_over} more would take the file past {max_bytes:g}x int8"
            if passed_over else "")
    steps = sizes(conversions - 1, len(order))
    made = 1
    for n in steps:
        keep = order[:n]
        with quiet():
            model = tries.quantizer.quantize(keep)
        made += 1
        size = tries.quantizer.size(model)
        if size > cap:
            return (f"keeping {n} layer(s) makes a file {size / int8_bytes:.2f}x int8, "
                    f"past the {max_bytes:g}x cap", "max_bytes", made)
        if tries.attempt(keep, model):
            return f"{n} layer(s) in float bring it within the budget", None, made
    if steps[-1] == len(order):
        return (f"every layer that adds error and fits the byte cap is float{over}",
                "max_bytes" if passed_over else None, made)
    return f"the conversion limit ({conversions}) is reached{over}", "conversions", made


def file_mismatch(search: KeepFloatSearch, file_bytes: int) -> str | None:
    """Why the int8-mixed file written from a search's choice is not the model the search
    measured (beyond the labels and preprocessing embedded in it, ``METADATA_SLACK``), or
    is past the byte cap; None when it is the one the record states.

    >>> s = KeepFloatSearch(samples=100, float_accuracy=0.9, int8_bytes=1_000_000,
    ...                     max_bytes_ratio=1.5, bytes_ratio=1.01, conversions=3,
    ...                     measured=True, within_budget=True, stopped="")
    >>> file_mismatch(s, 1_012_000) is None
    True
    >>> file_mismatch(s, 2_770_000)  # doctest: +NORMALIZE_WHITESPACE
    'the written file is 2,770,000 bytes, 2.77x the plain int8 model of the search, which
    measured 1.01x for the layers it chose (cap 1.5x): the file is not the model the search
    judged'
    """
    stated = search.bytes_ratio * search.int8_bytes
    if abs(file_bytes - stated) <= METADATA_SLACK + 0.01 * search.int8_bytes:
        return None
    return (f"the written file is {file_bytes:,} bytes, {file_bytes / search.int8_bytes:.2f}x "
            f"the plain int8 model of the search, which measured {search.bytes_ratio:.2f}x for "
            f"the layers it chose (cap {search.max_bytes_ratio:g}x): the file is not the model "
            "the search judged")

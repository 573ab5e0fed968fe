"""Honest accuracy figures: intervals, paired comparisons and the decisions built on them.

numpy and the standard library only (the TensorFlow-free device side imports it).

- :func:`wilson` - the Wilson score interval of one accuracy (Wilson 1927), the interval
  recommended by Brown, Cai & DasGupta (2001, *Statistical Science* 16:101-133) for small n.
- :func:`paired` - two models on the *same* samples: the difference of their accuracies with
  Newcombe's hybrid score interval for paired proportions (Newcombe 1998, *Statistics in
  Medicine* 17:2635-2650, method 10: Wilson intervals of both marginals combined with the
  phi correlation of the 2x2 table, no continuity correction) and the exact McNemar p-value
  (two-sided binomial test of the discordant pairs, ``scipy.stats.binomtest(b, b + c)``).
- :func:`samples_needed` - how many paired samples a McNemar test needs to detect a drop
  (Connor 1987, *Biometrics* 43:207-211).
- :func:`at_chance`, :func:`below_chance`, :func:`collapsed` - a model no better than
  guessing, one significantly worse (its labels or preprocessing are inconsistent with the
  data), or one that predicts one class for almost every sample.
- :func:`decide` - the regression rule: a drop fails when it is beyond the tolerance *and*
  significant at ``alpha`` (``rule="point"`` keeps the point-estimate rule).

>>> iv = wilson(127, 134)
>>> round(iv.estimate, 4), round(iv.low, 4), round(iv.high, 4)
(0.9478, 0.8961, 0.9745)
>>> cmp = paired([1] * 130 + [0] * 4, [1] * 129 + [0] * 5)   # one image lost on 134
>>> round(cmp.difference * 100, 2), cmp.p_value
(-0.75, 1.0)
>>> decide(cmp, tolerance=0.005).verdict      # beyond the tolerance, but not significant
'pass'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

Rule = Literal["significant", "point"]
RULES: tuple[Rule, ...] = ("significant", "point")
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
COLLAPSE_SHARE = 0.9


def _z(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence`` (1.959964 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must be in (0, 1)")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (fractions, not percent)."""

    estimate: float
    low: float
    high: float
    confidence: float = 0.95

    def __contains__(self, value: float) -> bool:
        return self.low - 1e-12 <= value <= self.high + 1e-12

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high,
                "confidence": self.confidence}

    def points(self) -> str:
        """In percentage points: ``'94.8 [89.6, 97.4]'``.

        >>> wilson(127, 134).points()
        '94.8 [89.6, 97.4]'
        """
        return f"{self.estimate * 100:.1f} [{self.low * 100:.1f}, {self.high * 100:.1f}]"


def wilson(correct: int, n: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of ``correct`` successes out of ``n``.

    >>> wilson(0, 10).low, round(wilson(0, 10).high, 4)
    (0.0, 0.2775)
    >>> wilson(0, 0)
    Interval(estimate=nan, low=0.0, high=1.0, confidence=0.95)
    """
    correct, n = int(correct), int(n)
    if n < 0 or not 0 <= correct <= max(n, 0):
        raise ValueError(f"need 0 <= correct <= n, got {correct} of {n}")
    if n == 0:
        return Interval(math.nan, 0.0, 1.0, confidence)
    z = _z(confidence)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return Interval(p, min(low, p), max(high, p), confidence)


def accuracy_interval(correct: Sequence[bool] | np.ndarray, confidence: float = 0.95
                      ) -> Interval:
    """:func:`wilson` of a vector of per-sample correctness."""
    hits = np.asarray(correct, dtype=bool).ravel()
    return wilson(int(hits.sum()), int(hits.size), confidence)


def mcnemar_exact(b: int, c: int) -> float:
    """The exact two-sided McNemar p-value of ``b`` and ``c`` discordant pairs.

    The binomial test of ``min(b, c)`` out of ``b + c`` at 1/2, doubled, capped at 1 (equal
    to ``scipy.stats.binomtest(b, b + c).pvalue``).

    >>> round(mcnemar_exact(0, 6), 6), round(mcnemar_exact(1, 9), 6), mcnemar_exact(3, 3)
    (0.03125, 0.021484, 1.0)
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n = b + c
    k = min(b, c)
    if n == 0 or 2 * k == n:
        return 1.0
    i = np.arange(k + 1, dtype=np.float64)
    logs = (math.lgamma(n + 1) - np.array([math.lgamma(j + 1) + math.lgamma(n - j + 1)
                                           for j in i]) - n * math.log(2.0))
    top = float(logs.max())
    tail = math.exp(top) * float(np.exp(logs - top).sum())
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class Paired:
    """Model B against model A on the same samples (B - A; negative = B is worse).

    ``both`` correct in both, ``only_a`` correct in A only (B lost them), ``only_b`` correct
    in B only (B gained them), ``neither``.
    """

    both: int
    only_a: int
    only_b: int
    neither: int
    difference: float
    interval: Interval
    p_value: float
    a: Interval
    b: Interval

    @property
    def n(self) -> int:
        return self.both + self.only_a + self.only_b + self.neither

    @property
    def discordance(self) -> float:
        """The share of samples on which the two models disagree about correctness."""
        return (self.only_a + self.only_b) / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"n": self.n, "difference": self.difference, "low": self.interval.low,
                "high": self.interval.high, "p_value": self.p_value, "lost": self.only_a,
                "gained": self.only_b}

    def describe(self) -> str:
        """the difference in points, its interval, the p-value and the counts.

        >>> paired([1] * 130 + [0] * 4, [1] * 129 + [0] * 5).describe()
        '-0.7 pt [-4.2, +2.3], p=1 (lost 1, gained 0 of 134)'
        """
        return (f"{self.difference * 100:+.1f} pt [{self.interval.low * 100:+.1f}, "
                f"{self.interval.high * 100:+.1f}], p={format_p(self.p_value)} "
                f"(lost {self.only_a}, gained {self.only_b} of {self.n})")


def format_p(p: float) -> str:
    """A p-value in a few characters: ``'0.032'``, ``'<0.001'``, ``'1'``.

    >>> format_p(0.03125), format_p(1e-9), format_p(1.0), format_p(0.5)
    ('0.031', '<0.001', '1', '0.5')
    """
    if p >= 0.9995:
        return "1"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}".rstrip("0")


def paired_counts(both: int, only_a: int, only_b: int, neither: int,
                  confidence: float = 0.95) -> Paired:
    """:func:`paired` from the four cells of the 2x2 table (see :class:`Paired`).

    Newcombe (1998) method 10 as in Fagerland, Lydersen & Laake, *Statistical Analysis of
    Contingency Tables* (2017), ch. 8: their example (Cavo et al. 2012; 59 both, 6 A only,
    16 B only, 80 neither) has the difference 0.0621 with 95% interval [0.0046, 0.1186].

    >>> cmp = paired_counts(59, 6, 16, 80)
    >>> round(cmp.difference, 4), round(cmp.interval.low, 4), round(cmp.interval.high, 4)
    (0.0621, 0.0046, 0.1186)
    """
    cells = [int(x) for x in (both, only_a, only_b, neither)]
    if min(cells) < 0:
        raise ValueError(f"2x2 counts must be >= 0, got {cells}")
    a, b, c, d = cells           # a both, b A only, c B only, d neither
    n = a + b + c + d
    acc_a, acc_b = wilson(a + b, n, confidence), wilson(a + c, n, confidence)
    if n == 0:
        return Paired(a, b, c, d, math.nan, Interval(math.nan, -1.0, 1.0, confidence), 1.0,
                      acc_a, acc_b)
    p_a, p_b = acc_a.estimate, acc_b.estimate
    theta = p_b - p_a
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    # phi of the 2x2 table, with Newcombe's correction: a positive association is reduced
    # by n/2 (and floored at 0), a negative one is used as it is.
    cross = float(a * d - b * c)
    corrected = cross - n / 2 if cross > n / 2 else min(cross, 0.0)
    phi = corrected / math.sqrt(denom) if denom > 0 else 0.0
    # B minus A: B's lower distance with A's upper distance, and the reverse.
    lo_b, hi_b = p_b - acc_b.low, acc_b.high - p_b
    lo_a, hi_a = p_a - acc_a.low, acc_a.high - p_a
    delta = math.sqrt(max(0.0, lo_b ** 2 - 2 * phi * lo_b * hi_a + hi_a ** 2))
    epsilon = math.sqrt(max(0.0, hi_b ** 2 - 2 * phi * hi_b * lo_a + lo_a ** 2))
    interval = Interval(theta, max(-1.0, theta - delta), min(1.0, theta + epsilon), confidence)
    return Paired(a, b, c, d, theta, interval, mcnemar_exact(b, c), acc_a, acc_b)


def paired(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray,
           confidence: float = 0.95) -> Paired:
    """Model B against model A from per-sample correctness on the same samples (B - A)."""
    ca = np.asarray(correct_a, dtype=bool).ravel()
    cb = np.asarray(correct_b, dtype=bool).ravel()
    if ca.shape != cb.shape:
        raise ValueError(f"paired comparison needs the same samples: {ca.size} != {cb.size}")
    return paired_counts(int(np.sum(ca & cb)), int(np.sum(ca & ~cb)), int(np.sum(~ca & cb)),
                         int(np.sum(~ca & ~cb)), confidence)


def samples_needed(drop: float, discordance: float | None = None,
                   alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER) -> int:
    """Paired samples a two-sided McNemar test needs to detect ``drop`` (Connor 1987).

    ``discordance`` is the expected share of samples on which the two models disagree about
    correctness (at least ``drop``; the default, ``drop`` itself, is the most optimistic:
    every disagreement is a loss).

    >>> samples_needed(0.03, discordance=0.05)
    434
    >>> samples_needed(0.01) > samples_needed(0.03)
    True
    """
    if not 0.0 < drop <= 1.0:
        raise ValueError(f"drop {drop} must be in (0, 1]")
    psi = max(drop, discordance or 0.0)
    z_a = NormalDist().inv_cdf(1 - alpha / 2)
    z_b = NormalDist().inv_cdf(power)
    n = (z_a * math.sqrt(psi) + z_b * math.sqrt(max(0.0, psi - drop * drop))) ** 2 / drop ** 2
    return math.ceil(n - 1e-9)


def at_chance(accuracy: Interval, classes: int) -> bool:
    """True when the accuracy interval contains the chance level 1/classes.

    >>> at_chance(wilson(20, 100), 5), at_chance(wilson(90, 100), 5)
    (True, False)
    """
    return classes > 1 and (1.0 / classes) in accuracy


def below_chance(accuracy: Interval, classes: int) -> bool:
    """True when the whole accuracy interval lies below the chance level 1/classes: a model
    that learned something, then is shown labels or inputs that do not match what it learned.

    >>> below_chance(wilson(25, 225), 5), below_chance(wilson(20, 100), 5)
    (True, False)
    """
    return classes > 1 and accuracy.high < 1.0 / classes


BELOW_CHANCE_CAUSE = ("its labels or its preprocessing are inconsistent with the data (classes "
                      "in another order, or pixels scaled differently from training); check "
                      "labels.txt against the data's classes, and the `input:` line of "
                      "training (preprocessing.json, --input-range)")


def collapsed(predictions: Sequence[int] | np.ndarray, share: float = COLLAPSE_SHARE
              ) -> int | None:
    """The class predicted for at least ``share`` of the samples, or None.

    >>> collapsed([3] * 95 + [1] * 5), collapsed([0, 1, 2, 3])
    (3, None)
    """
    preds = np.asarray(predictions).ravel().astype(np.int64)
    if preds.size == 0:
        return None
    values, counts = np.unique(preds, return_counts=True)
    top = int(np.argmax(counts))
    return int(values[top]) if counts[top] >= share * preds.size else None


def health_warning(accuracy: Interval, classes: int,
                   predictions: Sequence[int] | np.ndarray | None = None,
                   class_names: Sequence[str] | None = None, what: str = "the model") -> str | None:
    """One line when a model is at chance, significantly below it (with what that means,
    :data:`BELOW_CHANCE_CAUSE`) or collapsed onto one class, else None.

    >>> health_warning(wilson(20, 100), 5)
    'the model is at chance: accuracy 20.0 [13.3, 28.9] contains 1/5 = 20.0'
    >>> health_warning(wilson(25, 225), 5).split(":")[:2]
    ['the model is below chance', ' accuracy 11.1 [7.6, 15.9] is significantly below 1/5 = 20.0']
    >>> health_warning(wilson(45, 50), 5, [2] * 48 + [1, 0], ["a", "b", "c", "d", "e"])
    'the model predicts one class (c) for 96% of 50 samples'
    >>> health_warning(wilson(90, 100), 5, list(range(5)) * 20) is None
    True
    """
    if at_chance(accuracy, classes):
        return (f"{what} is at chance: accuracy {accuracy.points()} contains "
                f"1/{classes} = {100 / classes:.1f}")
    if below_chance(accuracy, classes):
        return (f"{what} is below chance: accuracy {accuracy.points()} is significantly below "
                f"1/{classes} = {100 / classes:.1f}: {BELOW_CHANCE_CAUSE}")
    if predictions is not None:
        top = collapsed(predictions)
        if top is not None:
            preds = np.asarray(predictions).ravel()
            name = class_names[top] if class_names and 0 <= top < len(class_names) else str(top)
            return (f"{what} predicts one class ({name}) for "
                    f"{np.mean(preds == top):.0%} of {preds.size} samples")
    return None


def health_of(accuracy: float, samples: int, classes: int,
              predictions: Sequence[int] | np.ndarray | None = None,
              class_names: Sequence[str] | None = None, what: str = "the model") -> str | None:
    """:func:`health_warning` of an accuracy measured on ``samples`` images (its Wilson
    interval); None when there are none.

    >>> health_of(0.2, 100, 5, what="tflite-int8")
    'tflite-int8 is at chance: accuracy 20.0 [13.3, 28.9] contains 1/5 = 20.0'
    >>> health_of(0.9, 0, 5) is None
    True
    """
    if not samples:
        return None
    return health_warning(wilson(round(accuracy * samples), samples), classes, predictions,
                          class_names, what=what)


@dataclass(frozen=True)
class Decision:
    """Whether a comparison is a regression, and the one line that says why."""

    verdict: Literal["pass", "fail"]
    reason: str
    underpowered: str | None = None     # "134 samples cannot resolve ...; about N needed"


def decide(comparison: Paired, tolerance: float, alpha: float = DEFAULT_ALPHA,
           rule: Rule = "significant", power: float = DEFAULT_POWER) -> Decision:
    """Fail when B dropped by more than ``tolerance`` and (rule ``significant``) the drop is
    significant at ``alpha`` (exact McNemar); rule ``point`` fails on the point estimate alone.

    ``underpowered`` is set when the samples are too few to detect a drop of the tolerance's
    size at ``alpha`` with ``power``.

    >>> lost_150 = paired_counts(4700, 150, 0, 150)            # -3 pt on 5,000 samples
    >>> decide(lost_150, 0.01).verdict
    'fail'
    >>> two_lost = paired_counts(127, 2, 0, 5)                 # -1.5 pt on 134 samples
    >>> decide(two_lost, 0.01).verdict, decide(two_lost, 0.01, rule="point").verdict
    ('pass', 'fail')
    >>> decide(two_lost, 0.01).underpowered
    '134 samples cannot resolve a 1.0-pt drop at alpha 0.05: about 1,170 needed'
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not one of {RULES}")
    drop = -comparison.difference if comparison.n else 0.0
    beyond = drop > tolerance + 1e-12
    significant = comparison.p_value < alpha
    needed = samples_needed(tolerance, comparison.discordance, alpha, power) if tolerance > 0 \
        else None
    under = (f"{comparison.n:,} samples cannot resolve a {tolerance * 100:.1f}-pt drop at "
             f"alpha {alpha:g}: about {needed:,} needed"
             if needed is not None and comparison.n < needed else None)
    if rule == "point":
        fail = beyond
        why = "beyond the tolerance" if beyond else "within the tolerance"
    else:
        fail = beyond and significant
        why = ("beyond the tolerance and significant" if fail else
               "within the tolerance" if not beyond else
               f"beyond the tolerance but not significant (p={format_p(comparison.p_value)} "
               f">= {alpha:g})")
    return Decision("fail" if fail else "pass", why, under)

"""Figures from kept per-sample predictions: accuracy intervals, paired differences, and what
quantization changed class by class. numpy only (reports and checks run without TensorFlow).

Predictions are :func:`edge_transfer.core.samples.encode` strings of top-1 class indices made on
the samples a :class:`~edge_transfer.core.samples.SampleIds` names; two sets of predictions are
compared only when they were made on the very same samples.

>>> from edge_transfer.core.records.paired import SampleIds
>>> from edge_transfer.core.samples import encode
>>> ids = SampleIds.of("f00d", "test", labels=[0, 0, 1, 1, 2, 2])
>>> accuracy_interval(ids, encode([0, 0, 1, 1, 2, 0])).points()
'83.3 [43.6, 97.0]'
>>> paired_difference(ids, encode([0, 0, 1, 1, 2, 2]), encode([0, 0, 1, 1, 2, 0])).describe()
'-16.7 pt [-56.4, +24.7], p=1 (lost 1, gained 0 of 6)'
>>> [(r.label, r.lost, r.gained) for r in class_changes(ids, encode([0, 0, 1, 1, 2, 2]),
...                                                     encode([0, 0, 1, 1, 2, 0]), "abc")]
[('a', 0, 0), ('b', 0, 0), ('c', 1, 0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_transfer.core import stats
from edge_transfer.core.records.paired import SampleIds
from edge_transfer.core.samples import SamplesError, decode, decode_or_none


def correct(predictions: str | None, ids: SampleIds | None) -> np.ndarray | None:
    """Per-sample correctness of encoded ``predictions`` on ``ids``'s samples, or None when
    either is missing or they do not match in length.

    >>> from edge_transfer.core.samples import encode
    >>> ids = SampleIds.of("f", "test", labels=[0, 1, 2])
    >>> correct(encode([0, 2, 2]), ids).tolist()
    [True, False, True]
    """
    if predictions is None or ids is None:
        return None
    try:
        preds, labels = decode(predictions), ids.label_array()
    except SamplesError:
        return None
    if preds.size != labels.size:
        return None
    return preds == labels


def accuracy_interval(ids: SampleIds | None, predictions: str | None) -> stats.Interval | None:
    """The Wilson 95% interval of the accuracy of ``predictions`` on ``ids``, or None."""
    hits = correct(predictions, ids)
    return None if hits is None else stats.accuracy_interval(hits)


def interval_of(accuracy: float | None, samples: int | None) -> stats.Interval | None:
    """The Wilson interval of an accuracy measured on ``samples`` samples (no predictions
    needed), or None when either is unknown.

    >>> interval_of(0.95, 134).points()
    '94.8 [89.6, 97.4]'
    """
    if accuracy is None or not samples:
        return None
    return stats.wilson(round(accuracy * samples), int(samples))


def paired_difference(ids: SampleIds | None, before: str | None, after: str | None,
                      after_ids: SampleIds | None = None) -> stats.Paired | None:
    """``after`` against ``before`` (after - before) on the same samples, or None when a
    side is missing or the two were made on different samples (``after_ids``, default
    ``ids``)."""
    if after_ids is not None and not after_ids.same_samples(ids):
        return None
    a, b = correct(before, ids), correct(after, ids)
    if a is None or b is None:
        return None
    return stats.paired(a, b)


@dataclass(frozen=True)
class ClassChange:
    """One class: how many of its samples a model got right before and after a change."""

    label: str
    samples: int
    before: int      # correct before (e.g. the float model)
    after: int       # correct after (e.g. the int8 file)
    lost: int        # right before, wrong after
    gained: int      # wrong before, right after

    @property
    def change(self) -> int:
        return self.after - self.before


def class_changes(ids: SampleIds | None, before: str | None, after: str | None,
                  labels: Sequence[str]) -> list[ClassChange]:
    """Per class of ``labels``: correct before/after, lost and gained (empty when unknown)."""
    a, b = correct(before, ids), correct(after, ids)
    if a is None or b is None or ids is None:
        return []
    try:
        y = ids.label_array()
    except SamplesError:
        return []
    out = []
    for index, label in enumerate(labels):
        mine = y == index
        out.append(ClassChange(str(label), int(mine.sum()), int((a & mine).sum()),
                               int((b & mine).sum()), int((a & ~b & mine).sum()),
                               int((~a & b & mine).sum())))
    return out


def health(ids: SampleIds | None, predictions: str | None, labels: Sequence[str],
           what: str) -> str | None:
    """:func:`edge_transfer.core.stats.health_warning` of kept predictions (None when unknown)."""
    interval, top1 = accuracy_interval(ids, predictions), decode_or_none(predictions)
    if interval is None or top1 is None:
        return None
    return stats.health_warning(interval, len(labels), top1, list(labels), what=what)


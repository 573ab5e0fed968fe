"""Per-sample figures several files share: which samples a set of predictions was made on
(:class:`SampleIds`) and model B against model A on them, paired (:class:`Comparison`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_transfer.core.records.base import Record


@dataclass(frozen=True)
class SampleIds(Record):
    """Which samples a set of per-sample predictions was made on: the data's fingerprint,
    the split, the positions in that split and their true labels (the last two encoded with
    :func:`edge_transfer.core.samples.encode`). Two predictions are compared pair by pair only
    when their ``SampleIds`` are the same (:meth:`same_samples`).

    >>> ids = SampleIds.of("1025a9517fa0a376", "test", labels=[0, 1, 1])
    >>> ids.count, ids.label_array().tolist(), ids.same_samples(ids)
    (3, [0, 1, 1], True)
    """

    fingerprint: str
    split: str
    indices: str
    labels: str
    count: int

    @classmethod
    def of(cls, fingerprint: str, split: str, labels: Any, indices: Any = None) -> SampleIds:
        """From the true labels (and positions, default ``0..n-1``) of the samples."""
        import numpy as np

        from edge_transfer.core.samples import encode

        labels = np.asarray(labels).ravel()
        index = np.arange(labels.size) if indices is None else np.asarray(indices).ravel()
        if index.size != labels.size:
            raise ValueError(f"{index.size} indices for {labels.size} labels")
        return cls(str(fingerprint), str(split), encode(index), encode(labels), int(labels.size))

    def same_samples(self, other: SampleIds | None) -> bool:
        """True when ``other`` names the very same samples (data, split, positions, labels)."""
        return other is not None and (self.fingerprint, self.split, self.indices,
                                      self.labels) == (other.fingerprint, other.split,
                                                       other.indices, other.labels)

    def label_array(self) -> Any:
        """The true labels as an int64 array (SamplesError if the string is damaged)."""
        from edge_transfer.core.samples import decode

        return decode(self.labels)

    def describe(self) -> str:
        """``'134 samples of the test split'``."""
        return f"{self.count:,} samples of the {self.split} split"


@dataclass(frozen=True)
class Comparison(Record):
    """Model B against model A on the same samples (B - A, fractions): the paired difference
    with its 95% interval (Newcombe), the exact McNemar p-value, and the discordant counts
    (``lost``: right in A, wrong in B; ``gained``: the reverse).
    See :mod:`edge_transfer.core.stats`.
    """

    n: int
    difference: float
    low: float
    high: float
    p_value: float
    lost: int
    gained: int

    @classmethod
    def of(cls, paired: Any) -> Comparison:
        """From a :class:`edge_transfer.core.stats.Paired`."""
        return cls(n=paired.n, difference=float(paired.difference),
                   low=float(paired.interval.low), high=float(paired.interval.high),
                   p_value=float(paired.p_value), lost=paired.only_a, gained=paired.only_b)

    def describe(self) -> str:
        """``'-0.7 pt [-4.2, +2.3], p=1 (lost 1, gained 0 of 134)'``."""
        from edge_transfer.core.stats import format_p

        return (f"{self.difference * 100:+.1f} pt [{self.low * 100:+.1f}, "
                f"{self.high * 100:+.1f}], p={format_p(self.p_value)} "
                f"(lost {self.lost}, gained {self.gained} of {self.n})")

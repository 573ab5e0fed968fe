"""Which test images a bundle ships: a bounded, stratified subset of the run's test split.

A device copies and runs the bundle's sample file by file, so its size must not grow with
the dataset. The default size is what the rest of the tool states it needs to resolve the
bundle's accuracy tolerance: the paired samples an exact McNemar test needs to detect a drop
of the tolerance (:func:`edge_transfer.core.stats.samples_needed`, alpha 0.05, power 0.8); the
whole split only when asked (``--samples all``) or when it is smaller.

Positions are drawn per class in proportion to the class's share (largest remainder), with
a fixed seed, and returned sorted: the manifest records them (``samples.indices``) so the
device's predictions pair with the workstation's and the float model's on the same images.

>>> default_samples(0.005)
1568
>>> positions = stratified_positions([0] * 80 + [1] * 20, 10)
>>> len(positions), int(sum(positions >= 80))     # 8 of class 0, 2 of class 1
(10, 2)
>>> stratified_positions([0, 1, 1], None).tolist()     # None: all of them
[0, 1, 2]
>>> parse_samples("all"), parse_samples("1000")
(None, 1000)
"""

from __future__ import annotations

import numpy as np

from edge_transfer.core import stats
from edge_transfer.core.errors import ConfigError

SEED = 0


def default_samples(tolerance: float) -> int:
    """The paired samples needed to resolve a drop of ``tolerance`` (see the module)."""
    return stats.samples_needed(tolerance)


def parse_samples(text: str) -> int | None:
    """``--samples``: a positive count, or ``all`` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"--samples is a number of test images (at least 1) or 'all', "
                          f"got {text!r}")
    return value


def stratified_positions(labels: object, count: int | None, seed: int = SEED) -> np.ndarray:
    """Sorted positions of ``count`` samples, each class in proportion to its share (all
    positions when ``count`` is None or not smaller than the number of labels)."""
    y = np.asarray(labels).ravel()
    if count is None or count >= y.size:
        return np.arange(y.size)
    classes, sizes = np.unique(y, return_counts=True)
    quota = sizes * count / y.size
    take = np.floor(quota).astype(int)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: count - int(take.sum())]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), size=k, replace=False)
              for c, k in zip(classes, take, strict=True) if k]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)

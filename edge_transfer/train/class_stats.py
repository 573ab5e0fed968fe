"""What a run keeps of its classes without keeping any item: class means and one shared
covariance of the extractor's features, the statistics of a linear discriminant (LDA) head.

With the extractor frozen from one step to the next, the statistics of the old classes stay
exact: a step adds the new classes' means and their within-class scatter, and the LDA head
computed from the sum is the one the same statistics of every class at once give (Hayes and
Kanan, "Lifelong machine learning with deep streaming linear discriminant analysis", 2020;
Panos et al., "First session adaptation", 2023). No pixels and no feature vector of any
image are stored. The scatter is kept at rank ``RANK`` (its leading eigenvectors; the rest
as one isotropic level, the total trace exact), so the file is D x RANK floats plus one mean
per class, whatever the number of images.

The head: ``w_c = S^-1 mu_c``, ``b_c = -mu_c' S^-1 mu_c / 2`` with equal class priors (no bias
toward the classes with more images) and the covariance shrunk toward its mean variance
(``shrinkage``); weights and biases centred over classes (softmax unchanged, smaller logits
for int8).

>>> rng = np.random.default_rng(0)
>>> x = np.concatenate([rng.normal(-1, 1, (50, 6)), rng.normal(1, 1, (50, 6))])
>>> y = np.repeat([0, 1], 50)
>>> a = ClassStatistics.of(x[y == 0], y[y == 0], ("a",), "e")
>>> both = a.plus(ClassStatistics.of(x[y == 1], y[y == 1] - 1, ("b",), "e"))
>>> float(np.mean(both.head().predict(x) == y)) > 0.9
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_transfer.core.atomic import atomic_path
from edge_transfer.core.errors import ModelError
from edge_transfer.train.linear_head import LinearHead

STATS_FILE = "class_stats.npz"
RANK = 128                 # leading directions of the scatter kept (benchmarks/incremental.py)
SHRINKAGE = 0.3            # toward the mean variance; 0.1-0.6 within 1 pt on both benchmarks


@dataclass(frozen=True, eq=False)
class ClassStatistics:
    """Per-class feature means and counts; the within-class scatter at low rank."""

    means: np.ndarray          # (C, D)
    counts: np.ndarray         # (C,)
    basis: np.ndarray          # (D, r) orthonormal leading directions of the scatter
    spectrum: np.ndarray       # (r,) the scatter along them
    trace: float               # the whole scatter's trace
    class_names: tuple[str, ...]
    extractor: str

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...], extractor: str,
           rank: int = RANK) -> ClassStatistics:
        """The statistics of features ``x`` with labels ``y`` (0..len(class_names)-1)."""
        x = np.asarray(x, np.float64)
        means = np.stack([x[y == c].mean(axis=0) for c in range(len(class_names))])
        centred = x - means[y]
        basis, spectrum = _leading(centred.T, rank)
        return cls(means, np.bincount(y, minlength=len(class_names)).astype(np.int64), basis,
                   spectrum, float(np.sum(centred * centred)), tuple(class_names), extractor)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays (float32)."""
        return int(4 * (self.means.size + self.basis.size + self.spectrum.size))

    def plus(self, other: ClassStatistics) -> ClassStatistics:
        """This run's classes, then ``other``'s: means appended, scatters added."""
        if other.extractor != self.extractor:
            raise ModelError("the two class statistics come from different extractors")
        rank = max(self.basis.shape[1], other.basis.shape[1])
        stacked = np.concatenate([self.basis * np.sqrt(self.spectrum),
                                  other.basis * np.sqrt(other.spectrum)], axis=1)
        basis, spectrum = _leading(stacked, rank)
        return ClassStatistics(np.concatenate([self.means, other.means]),
                               np.concatenate([self.counts, other.counts]), basis, spectrum,
                               self.trace + other.trace, self.class_names + other.class_names,
                               self.extractor)

    def head(self, shrinkage: float = SHRINKAGE) -> LinearHead:
        """The LDA head of every class (see the module's docstring)."""
        dim, dof = self.means.shape[1], max(int(self.counts.sum()) - len(self.counts), 1)
        kept = self.spectrum / dof
        rest = max(self.trace / dof - kept.sum(), 0.0) / max(dim - len(kept), 1)
        level = (1 - shrinkage) * rest + shrinkage * self.trace / dof / dim
        extra = (1 - shrinkage) * (kept - rest)        # covariance = level I + U diag(extra) U'
        along = self.means @ self.basis                # (C, r)
        solved = (self.means - (along * (extra / (level + extra))) @ self.basis.T) / level
        kernel = solved.T                              # (D, C): S^-1 mu_c
        bias = -0.5 * np.sum(self.means * solved, axis=1)
        return LinearHead(kernel - kernel.mean(axis=1, keepdims=True), bias - bias.mean())

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / STATS_FILE
        with atomic_path(path, keep_suffix=True) as tmp:
            np.savez(tmp, means=self.means.astype(np.float32), counts=self.counts,
                     basis=self.basis.astype(np.float32), spectrum=self.spectrum,
                     trace=np.float64(self.trace), class_names=np.asarray(self.class_names, str),
                     extractor=np.asarray(self.extractor))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> ClassStatistics | None:
        """``RUN/class_stats.npz``, or None when the run has none (made before them)."""
        path = Path(run_dir) / STATS_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as d:
                return cls(d["means"].astype(np.float64), d["counts"].astype(np.int64),
                           d["basis"].astype(np.float64), d["spectrum"].astype(np.float64),
                           float(d["trace"]), tuple(str(n) for n in d["class_names"]),
                           str(d["extractor"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot read {path} ({exc}); delete it to extend with "
                             "--head softmax, or train the run again") from exc


def _leading(columns: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The leading ``rank`` eigenvectors and eigenvalues of ``columns @ columns.T`` (D x n),
    through the smaller of the two Gram matrices."""
    dim, n = columns.shape
    if n <= dim:
        values, vectors = np.linalg.eigh(columns.T @ columns)
        order = np.argsort(values)[::-1][:rank]
        values = np.maximum(values[order], 0.0)
        keep = values > 1e-12 * max(values[0] if len(values) else 0.0, 1e-300)
        basis = columns @ vectors[:, order[keep]] / np.sqrt(values[keep])
        return basis, values[keep]
    values, vectors = np.linalg.eigh(columns @ columns.T)
    order = np.argsort(values)[::-1][:rank]
    return vectors[:, order], np.maximum(values[order], 0.0)

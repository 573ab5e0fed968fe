"""What a run keeps of its classes for the next extension: a few feature vectors per class.

With the extractor frozen from one step to the next, the extractor's output for an image is
all the classifier ever sees of it: keeping ``N`` feature vectors per class (float16, no
pixels) lets ``edge-transfer extend`` train the new head on the old classes too. The items
are chosen by herding (Rebuffi et al., iCaRL, 2017): greedily, the item that brings the mean
of the chosen (L2-normalised) vectors closest to the class mean; the order is a priority
list, so the first ``k`` of a class are the memory of size ``k``.

``RUN/memory.npz`` holds ``features`` (N, D) float16, ``labels`` (N,) indices into
``class_names``, ``class_names``, ``per_class`` and ``extractor`` (a digest of the extractor's
weights: features of another extractor are refused).

>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(50, 8)).astype(np.float32); y = np.repeat([0, 1], 25)
>>> mem = build_memory(x, y, ("a", "b"), per_class=5, extractor="abc")
>>> len(mem), mem.per_class, mem.truncated(2).labels.tolist()
(10, 5, [0, 0, 1, 1])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_transfer.core.atomic import atomic_path
from edge_transfer.core.errors import ModelError

MEMORY_FILE = "memory.npz"


def herding(features: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` rows of ``features`` chosen by herding toward their mean, in
    the order chosen (each a new row).

    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [2.0, 2.0]])
    >>> herding(x, 2).tolist()
    [3, 2]
    """
    count = min(count, len(features))
    if count <= 0:
        return np.zeros(0, np.int64)
    x = features.astype(np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    target = x.mean(axis=0)
    chosen: list[int] = []
    total = np.zeros_like(target)
    free = np.ones(len(x), bool)
    for k in range(1, count + 1):
        gap = np.linalg.norm(target - (total + x) / k, axis=1)
        gap[~free] = np.inf
        pick = int(np.argmin(gap))
        chosen.append(pick)
        free[pick] = False
        total += x[pick]
    return np.asarray(chosen, np.int64)


@dataclass(frozen=True, eq=False)
class FeatureMemory:
    """Feature vectors kept per class (see the module's docstring)."""

    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    per_class: int
    extractor: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored vectors (float16, as in memory.npz)."""
        return int(self.features.size * 2)

    def truncated(self, per_class: int) -> FeatureMemory:
        """The first ``per_class`` items of each class (herding order: still the best)."""
        keep = np.concatenate([np.flatnonzero(self.labels == c)[:per_class]
                               for c in range(len(self.class_names))] or [np.zeros(0, int)])
        keep = np.sort(keep.astype(np.int64))
        return FeatureMemory(self.features[keep], self.labels[keep], self.class_names,
                             min(per_class, self.per_class), self.extractor)

    def plus(self, other: FeatureMemory) -> FeatureMemory:
        """This memory's classes, then ``other``'s (its labels shifted after ours)."""
        if other.extractor != self.extractor:
            raise ModelError("the two memories come from different extractors")
        return FeatureMemory(np.concatenate([self.features, other.features]),
                             np.concatenate([self.labels, other.labels + len(self.class_names)]),
                             self.class_names + other.class_names,
                             max(self.per_class, other.per_class), self.extractor)

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / MEMORY_FILE
        with atomic_path(path, keep_suffix=True) as tmp:
            np.savez(tmp, features=self.features.astype(np.float16),
                     labels=self.labels.astype(np.int32),
                     class_names=np.asarray(self.class_names, dtype=str),
                     per_class=np.int32(self.per_class), extractor=np.asarray(self.extractor))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> FeatureMemory:
        """``RUN/memory.npz`` (ModelError naming the fix when missing or unreadable)."""
        path = Path(run_dir) / MEMORY_FILE
        if not path.is_file():
            raise ModelError(f"{run_dir} keeps no memory of its classes ({MEMORY_FILE} is "
                             "missing: the run predates it, or was made with --memory 0); "
                             "extend it with --memory 0 (distillation only), or train it "
                             "again with `edge-transfer finetune --memory N`")
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(data["features"].astype(np.float32), data["labels"].astype(np.int64),
                           tuple(str(n) for n in data["class_names"]),
                           int(data["per_class"]), str(data["extractor"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot read {path} ({exc}); extend with --memory 0 or train "
                             "the run again") from exc


def build_memory(features: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                 per_class: int, extractor: str) -> FeatureMemory:
    """``per_class`` items of each class of ``labels`` (0..len(class_names)-1), by herding."""
    picks = [np.flatnonzero(labels == c)[herding(features[labels == c], per_class)]
             for c in range(len(class_names))]
    keep = np.concatenate(picks) if picks else np.zeros(0, np.int64)
    return FeatureMemory(features[keep].astype(np.float32), labels[keep].astype(np.int64),
                         tuple(class_names), per_class, extractor)


def extractor_digest(features_model: Any) -> str:
    """A short sha256 of a Keras model's weights: the same extractor, the same digest."""
    digest = hashlib.sha256()
    for weight in features_model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def classifier_layer(model: Any) -> Any:
    """The Dense layer whose softmax is the model's output (a model made by ``finetune``)."""
    from edge_transfer.core.keras import load

    _, keras = load()
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    last = model.layers[-1]
    if not dense or not isinstance(last, keras.layers.Activation | keras.layers.Softmax) \
            or dense[-1] is not model.layers[-2]:
        raise ModelError("the run's model does not end in a Dense layer and a softmax; "
                         "extend needs a model made by `edge-transfer finetune`")
    return dense[-1]


def features_model(model: Any) -> Any:
    """``model`` cut at its classifier's input: what a memory item stores."""
    from edge_transfer.core.keras import load

    _, keras = load()
    return keras.Model(model.inputs, classifier_layer(model).input, name="features")

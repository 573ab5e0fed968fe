"""A softmax classifier on fixed feature vectors, trained in numpy (no TensorFlow): the head
of a class-incremental step, with distillation from the old head and weight aligning.

Loss per sample: cross-entropy (optionally class-balanced: each class weighs the same in
total), plus ``distill`` x T^2 x the KL divergence between the old head's and the new head's
softmax over the old classes at temperature T (Li and Hoiem, LwF, 2017). Adam, mini-batches,
seeded. :func:`align_weights` rescales the new classes' weight vectors to the old classes'
mean norm (Zhao et al., "Maintaining discrimination and fairness in class incremental
learning", 2020), the fix for the head's bias toward the newest classes.

>>> rng = np.random.default_rng(0)
>>> x = np.concatenate([rng.normal(-2, 1, (40, 3)), rng.normal(2, 1, (40, 3))])
>>> y = np.repeat([0, 1], 40)
>>> head = train_head(LinearHead.initial(3, 2, seed=0), x, y, HeadTraining(epochs=50,
...                                                                   learning_rate=1e-2))
>>> float(np.mean(head.predict(x) == y))
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class LinearHead:
    """``logits = x @ kernel + bias``; kernel (D, classes)."""

    kernel: np.ndarray
    bias: np.ndarray

    @classmethod
    def initial(cls, dim: int, classes: int, seed: int = 0) -> LinearHead:
        """Glorot-uniform kernel, zero bias (as Keras' Dense)."""
        limit = np.sqrt(6.0 / (dim + classes))
        kernel = np.random.default_rng(seed).uniform(-limit, limit, (dim, classes))
        return cls(kernel.astype(np.float64), np.zeros(classes))

    @property
    def classes(self) -> int:
        return int(self.kernel.shape[1])

    def grown(self, classes: int, seed: int = 0) -> LinearHead:
        """This head's classes first, then new ones with fresh weights."""
        fresh = LinearHead.initial(self.kernel.shape[0], classes, seed)
        kernel = fresh.kernel.copy()
        bias = fresh.bias.copy()
        kernel[:, :self.classes] = self.kernel
        bias[:self.classes] = self.bias
        return LinearHead(kernel, bias)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) @ self.kernel + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(x), axis=1)


@dataclass(frozen=True)
class HeadTraining:
    """How :func:`train_head` trains."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    balanced: bool = False        # class-balanced cross-entropy
    distill: float = 0.0          # weight of the distillation term (0: off)
    temperature: float = 2.0
    seed: int = 0
    frozen: int = 0               # the first N classes' weights do not train


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sample_weights(y: np.ndarray, classes: int, balanced: bool) -> np.ndarray:
    if not balanced:
        return np.ones(len(y))
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(classes)
    per_class[present] = len(y) / (present.sum() * counts[present])
    return per_class[y]


def train_head(head: LinearHead, x: np.ndarray, y: np.ndarray, how: HeadTraining,
               teacher: np.ndarray | None = None) -> LinearHead:
    """``head`` trained on features ``x``, labels ``y``; ``teacher``: the old head's logits
    (N, old classes) for distillation over the first ``teacher.shape[1]`` classes."""
    x = np.asarray(x, np.float64)
    kernel, bias = head.kernel.copy(), head.bias.copy()
    weights = _sample_weights(y, head.classes, how.balanced)
    rng = np.random.default_rng(how.seed)
    moments = [np.zeros_like(kernel), np.zeros_like(bias)]
    squares = [np.zeros_like(kernel), np.zeros_like(bias)]
    step = 0
    t = how.temperature
    for _ in range(how.epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), how.batch_size):
            idx = order[start:start + how.batch_size]
            xb = x[idx]
            probs = _softmax(xb @ kernel + bias)
            grad = probs
            grad[np.arange(len(idx)), y[idx]] -= 1.0
            grad *= weights[idx, None]
            if teacher is not None and how.distill > 0:
                old = teacher.shape[1]
                target = _softmax(teacher[idx] / t)
                student = _softmax((xb @ kernel[:, :old] + bias[:old]) / t)
                grad[:, :old] += how.distill * t * (student - target)  # d(T^2 KL)/dz
            grad /= len(idx)
            grad[:, :how.frozen] = 0.0
            step += 1
            for k, g in enumerate((xb.T @ grad, grad.sum(axis=0))):
                moments[k] = 0.9 * moments[k] + 0.1 * g
                squares[k] = 0.999 * squares[k] + 0.001 * g * g
                update = how.learning_rate * (moments[k] / (1 - 0.9 ** step)) / (
                    np.sqrt(squares[k] / (1 - 0.999 ** step)) + 1e-7)
                if k == 0:
                    kernel -= update
                else:
                    bias -= update
    return LinearHead(kernel, bias)


def align_weights(head: LinearHead, old: int) -> LinearHead:
    """Weight aligning: the new classes' weight vectors (and biases) scaled by
    mean old norm / mean new norm (Zhao et al. 2020).

    >>> h = LinearHead(np.array([[1.0, 4.0], [0.0, 0.0]]), np.zeros(2))
    >>> align_weights(h, 1).kernel[:, 1].tolist()
    [1.0, 0.0]
    """
    if old <= 0 or old >= head.classes:
        return head
    norms = np.linalg.norm(head.kernel, axis=0)
    gamma = float(norms[:old].mean() / max(norms[old:].mean(), 1e-12))
    kernel, bias = head.kernel.copy(), head.bias.copy()
    kernel[:, old:] *= gamma
    bias[old:] *= gamma
    return LinearHead(kernel, bias)

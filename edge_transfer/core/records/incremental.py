"""``RUN/incremental.json`` (:class:`IncrementalHistory`): the history of a run grown class by
class (``edge-transfer extend``, :mod:`edge_transfer.train.incremental`), one StepFigures per
step, each on the test split of that step's data. Step 0 is the run the first extension started
from; each later step says which classes came, the memory kept per class, the accuracy on all /
old / new classes, the old classes' accuracy before the step on the same images (paired), the
forgetting per old class (before - after) and the baselines on the same images."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_transfer.core.errors import ModelError
from edge_transfer.core.records.base import OMIT_NONE, FileRecord, Record
from edge_transfer.core.records.paired import Comparison


@dataclass(frozen=True)
class BaselineFigures(Record):
    """A baseline's accuracies on the same test images, and the method against it
    (``method_vs``: method - baseline on all classes, paired)."""

    all_accuracy: float
    old_accuracy: float | None = None
    new_accuracy: float | None = None
    method_vs: Comparison | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class StepFigures(Record):
    """One step of a run's class-incremental history (fractions in [0, 1])."""

    step: int
    run: str
    classes: tuple[str, ...]                 # the classes this step added
    total_classes: int
    memory_per_class: int
    memory_bytes: int
    test_samples: int
    all_accuracy: float
    old_accuracy: float | None = None
    new_accuracy: float | None = None
    old_before: float | None = None
    old_samples: int | None = None
    old_change: Comparison | None = field(default=None, metadata=OMIT_NONE)
    forgetting: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, BaselineFigures] = field(default_factory=dict)
    seconds: float | None = None


@dataclass(frozen=True)
class IncrementalHistory(FileRecord, file="incremental.json", version=1, error=ModelError,
                         make="extend the run again with `edge-transfer extend`"):
    """``RUN/incremental.json`` (see the module's docstring).

    >>> step = StepFigures(step=0, run="runs/a", classes=("0", "1"), total_classes=2,
    ...                    memory_per_class=20, memory_bytes=0, test_samples=90,
    ...                    all_accuracy=0.97)
    >>> IncrementalHistory(steps=(step,)).curve()
    [(0, 2, 0.97)]
    """

    steps: tuple[StepFigures, ...]

    @property
    def last(self) -> StepFigures:
        return self.steps[-1]

    def curve(self) -> list[tuple[int, int, float]]:
        """(step, classes so far, all-class accuracy) per step."""
        return [(s.step, s.total_classes, s.all_accuracy) for s in self.steps]

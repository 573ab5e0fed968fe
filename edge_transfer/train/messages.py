"""What a training run tells its user: progress lines (``say``), the note on what the backbone is
fed, the health warnings printed on stderr at the end of training (and kept in run.json), and
the lines the commands print about a finished run (``summary_line``, ``health_line``). The
health checks themselves are :mod:`edge_transfer.train.health`'s.

>>> say(TrainingConfig(data="digits", out=Path("run"), verbose=1), "stage 1")
stage 1
>>> health_line(Path("no-such-run")) is None
True
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Protocol

from edge_transfer.core.records.run import RunInfo, RunMetrics
from edge_transfer.data.dataset import Splits
from edge_transfer.train import backbones
from edge_transfer.train.config import TrainingConfig
from edge_transfer.train.runs import LABELS_FILE, METRICS_FILE


class Verbosity(Protocol):
    """Options that say how much to print: the training configs, ``extend``'s."""

    @property
    def verbose(self) -> int: ...


def say(cfg: Verbosity, message: str) -> None:
    """``message`` on stdout unless the run is silent (``verbose`` 0)."""
    if cfg.verbose:
        print(message, flush=True)


def input_note(cfg: TrainingConfig, backbone: backbones.Backbone) -> list[str]:
    """Say what the backbone is fed (one line, see :mod:`edge_transfer.train.input_range`); a
    warning when pixels are scaled twice, returned for run.json."""
    decision = backbone.input
    if decision is None:
        return []
    say(cfg, decision.line())
    if decision.warning is None:
        return []
    print(f"warning: {decision.warning}", file=sys.stderr, flush=True)
    return [decision.warning]


def print_warnings(history: dict[str, list[float]], metrics: RunMetrics,
                   splits: Splits, model: Any, learning_rate: float,
                   stages: dict[str, dict[str, list[float]]] | None = None) -> list[str]:
    """The warnings of :func:`edge_transfer.train.health.run_warnings` (the kept epoch's
    ``history``; every stage's per-epoch validation), each printed on stderr."""
    from edge_transfer.train.health import run_warnings
    from edge_transfer.train.models import has_batchnorm

    lines = run_warnings(history, metrics, len(splits.train), len(splits.val),
                         splits.train.num_classes, has_batchnorm(model), learning_rate, stages)
    for line in lines:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    return lines


def summary_line(run_dir: Path) -> str:
    """One line: what was trained, its accuracies and where it went."""
    run_dir = Path(run_dir)
    if not (run_dir / METRICS_FILE).is_file():
        return "this worker is done; the chief worker wrote the run directory"
    from edge_transfer.core import stats

    m = RunMetrics.load(run_dir)
    test = f"test accuracy {_figure(m.test_accuracy)}"
    if m.test_samples and m.test_accuracy is not None:
        iv = stats.wilson(round(m.test_accuracy * m.test_samples), m.test_samples)
        test += f" [{iv.low:.3f}, {iv.high:.3f}] on {m.test_samples}"
    parts = [test, f"val {_figure(m.val_accuracy)}"]
    if m.scratch_test_accuracy is not None:
        parts.append(f"scratch baseline {m.scratch_test_accuracy:.3f}")
    if m.source_accuracy_before is not None:
        parts.append(f"source {m.source_accuracy_before:.3f} -> "
                     f"{_figure(m.source_accuracy_after)}")
    seconds = RunInfo.load(run_dir).seconds or 0.0
    return f"{', '.join(parts)} in {seconds:.0f} s -> {run_dir}"


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def health_line(run_dir: Path, what: str = "the model") -> str | None:
    """One line when the run's model is at chance on its test split, or predicts one class
    for >= 90% of it (see :func:`edge_transfer.core.stats.health_warning`); None otherwise."""
    from edge_transfer.core import stats
    from edge_transfer.core.samples import decode_or_none

    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    m = RunMetrics.load(path)
    labels = _labels(Path(run_dir))
    if not m.test_samples or not labels or m.test_accuracy is None:
        return None
    return stats.health_of(m.test_accuracy, m.test_samples, len(labels),
                           decode_or_none(m.test_predictions), labels, what=what)


def _labels(run_dir: Path) -> list[str]:
    path = run_dir / LABELS_FILE
    return path.read_text().splitlines() if path.is_file() else []

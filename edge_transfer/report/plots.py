"""The report's plots (matplotlib's Agg canvas, no pyplot): accuracy against file size with
the Pareto front, confusion matrices side by side, and the drawing helpers the device
report's latency plots share.

>>> styles(["onnx", "tflite", "coreml"])["coreml"]
('^', 'tab:green')
>>> label_lifts([(1.0, 0.9), (1.05, 0.9), (100.0, 0.5)], log_x=True)
[0, 1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_transfer.core.records.report import Report

STYLE = {"tflite": ("o", "tab:blue"), "onnx": ("s", "tab:orange")}
OTHER_STYLES = [("^", "tab:green"), ("D", "tab:purple"), ("v", "tab:brown")]


def label_lifts(points: Sequence[tuple[float, float]], log_x: bool) -> list[int]:
    """How many label lines up each point's label goes, so that close labels do not overlap."""
    import math

    if not points:
        return []
    xs = [math.log10(p[0]) if log_x else p[0] for p in points]
    ys = [p[1] for p in points]
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    lifts: list[int] = []
    for i in range(len(points)):
        taken = {lifts[j] for j in range(i)
                 if abs(xs[i] - xs[j]) / span_x < 0.25 and abs(ys[i] - ys[j]) / span_y < 0.06}
        lifts.append(next(k for k in range(len(points)) if k not in taken))
    return lifts


def styles(formats: Sequence[str]) -> dict[str, tuple[str, str]]:
    """A (marker, colour) per format: TFLite and ONNX fixed, any other from a short list."""
    extra = iter(OTHER_STYLES * (len(formats) + 1))
    return {f: STYLE.get(f) or next(extra) for f in formats}


def figure(size: tuple[float, float]) -> Any:
    """A matplotlib Figure drawn by Agg, without pyplot (no global backend switched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: Path) -> None:
    from edge_transfer.core.atomic import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (smaller or equal size AND more accurate).

    >>> pareto_front([(100, 0.9), (50, 0.95), (30, 0.80), (60, 0.94)])
    [2, 1]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def accuracy_vs_size(report: Report, path: Path) -> None:
    """Accuracy against file size per artifact, one marker/colour per format, its 95%
    interval as an error bar, and the Pareto front."""
    sized = [r for r in report.artifacts if r.bytes is not None]
    device = any(r.device_accuracy is not None for r in sized)
    measured = [(r, r.bytes, r.device_accuracy if device else r.workstation_accuracy)
                for r in sized]
    rows = [r for r, _, acc in measured if acc is not None]
    points = [(size / 1024, acc) for _, size, acc in measured
              if size is not None and acc is not None]
    fig = figure((7, 4.5))
    ax = fig.subplots()
    for fmt, (marker, colour) in styles(sorted({str(r.format) for r in rows})).items():
        mine = [(r, p) for r, p in zip(rows, points, strict=True) if r.format == fmt]
        ax.scatter([p[0] for _, p in mine], [p[1] for _, p in mine], marker=marker,
                   color=colour, s=50, label=fmt, zorder=3)
        bars = [(p, iv) for r, p in mine
                if (iv := r.device_interval if device else r.workstation_interval)]
        if bars:  # the 95% interval of each accuracy
            ax.errorbar([p[0] for p, _ in bars], [p[1] for p, _ in bars],
                        yerr=[[max(0.0, p[1] - iv[0]) for p, iv in bars],
                              [max(0.0, iv[1] - p[1]) for p, iv in bars]],
                        fmt="none", ecolor=colour, elinewidth=1, capsize=3, alpha=0.6,
                        zorder=2)
    log_x = bool(points) and max(p[0] for p in points) > 8 * min(p[0] for p in points)
    for r, point, lift in zip(rows, points, label_lifts(points, log_x), strict=True):
        ax.annotate(r.name, point, textcoords="offset points", xytext=(5, 4 + 9 * lift),
                    fontsize=7)
    front = [points[i] for i in pareto_front(points)]
    if front:
        ax.plot(*zip(*front, strict=True), linestyle="--", color="gray", drawstyle="steps-post",
                label="Pareto front", zorder=2)
    if not device and report.float_accuracy is not None:  # same split as the points
        ax.axhline(report.float_accuracy, linestyle=":", color="black", linewidth=1,
                   label="float model (workstation)")
    if log_x:
        ax.set_xscale("log")
    ax.margins(x=0.12, y=0.25)
    ax.set_xlabel("file size (KiB)")
    ax.set_ylabel(f"accuracy ({'device' if device else 'workstation'}), 95% interval")
    ax.set_title("accuracy against size" + ("" if rows else " (no artifact measured)"))
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(fontsize=8, loc="best", framealpha=0.8)
    save(fig, path)


def confusion(pair: Sequence[tuple[str, Any]], labels: Sequence[str], path: Path) -> None:
    """Confusion matrices side by side (rows: true class, columns: predicted)."""
    import numpy as np

    fig = figure((4.2 * len(pair), 4))
    axes = fig.subplots(1, len(pair))
    for ax, (name, matrix) in zip(np.atleast_1d(axes), pair, strict=True):
        m = np.asarray(matrix)
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > m.max() / 2 else "black")
        ticks = range(m.shape[0])
        names = list(labels) if len(labels) == m.shape[0] else [str(t) for t in ticks]
        ax.set_xticks(ticks, names, fontsize=7)
        ax.set_yticks(ticks, names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    save(fig, path)

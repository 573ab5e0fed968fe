"""Drawing helpers shared by the report's plots (matplotlib's Agg canvas, no pyplot).

>>> styles(["onnx", "tflite", "coreml"])["coreml"]
('^', 'tab:green')
>>> label_lifts([(1.0, 0.9), (1.05, 0.9), (100.0, 0.5)], log_x=True)
[0, 1, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

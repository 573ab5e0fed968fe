"""The report's per-device part: which file to deploy on each device validated, and the
accuracy-against-latency plot of each (the twin of the accuracy-against-size plot).

A device is one validation JSON (``report --validation`` is repeatable: the workstation, the
emulated arm64 device, a board over ssh...). Its recommendation is the validation's own
(``validate`` writes it), else computed here by the same rule
(:func:`edge_transfer.deploy.recommend.recommend_result`), with the float model's predictions
taken from export.json at the device sample's positions in the test split.

>>> plot_name(0, "local"), plot_name(1, "emulated:arm64")
('accuracy_vs_latency.png', 'accuracy_vs_latency_emulated-arm64.png')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_transfer.core import stats
from edge_transfer.core.errors import UserError
from edge_transfer.core.records.device import Recommendation
from edge_transfer.core.records.export import ExportRecord
from edge_transfer.core.records.paired import SampleIds
from edge_transfer.core.records.validation import ValidationResult, ValidationRow
from edge_transfer.core.samples import SamplesError, decode, encode
from edge_transfer.deploy.recommend import recommend_result
from edge_transfer.report.markdown import HOW_TO_READ

LATENCY_PLOT = "accuracy_vs_latency.png"
DEFAULT_TOLERANCE = 0.005


def plot_name(index: int, device: str) -> str:
    """The first device's plot is ``accuracy_vs_latency.png``; others carry the device."""
    if index == 0:
        return LATENCY_PLOT
    return f"accuracy_vs_latency_{re.sub(r'[^A-Za-z0-9]+', '-', device).strip('-')}.png"


def load_validation(path: str | Path, fingerprint: str) -> ValidationResult:
    """A further device's validation JSON, made from the run's data."""
    result = ValidationResult.load(path, error=UserError,
                                   fix="write it with `edge-transfer validate BUNDLE --json OUT`")
    if result.data_fingerprint and result.data_fingerprint != fingerprint:
        raise UserError(f"{path} was made from other data than the run (fingerprint "
                        f"{result.data_fingerprint} != {fingerprint}); bundle and validate "
                        "this run's export again")
    return result


def recommendations(export: ExportRecord, validations: Sequence[ValidationResult]
                    ) -> tuple[Recommendation, ...]:
    """One recommendation per validation (its own, else computed by the same rule)."""
    return tuple(v.recommendation or recommend_result(
        v, float_on(export, v.samples), _tolerance(v)) for v in validations)


def float_on(export: ExportRecord, samples: SampleIds | None) -> str | None:
    """The float model's top-1 on ``samples`` (positions in export's test split), encoded;
    None unless they are positions of that very split with the same labels."""
    base = export.samples
    if base is None or samples is None or export.float_predictions is None or \
            (base.fingerprint, base.split) != (samples.fingerprint, samples.split):
        return None
    try:
        index, top1 = decode(samples.indices), decode(export.float_predictions)
        labels = base.label_array()
        if index.size and (index.max() >= labels.size or top1.size != labels.size):
            return None
        if not np.array_equal(labels[index], samples.label_array()):
            return None
    except SamplesError:
        return None
    return encode(top1[index])


def _tolerance(result: ValidationResult) -> float:
    """The accuracy tolerance the device's checks used."""
    for row in result.artifacts:
        for check in row.checks:
            if check.name == "accuracy" and isinstance(check.limit, int | float):
                return float(check.limit)
    return DEFAULT_TOLERANCE


def plot_accuracy_vs_latency(result: ValidationResult, rec: Recommendation | None,
                             path: Path) -> None:
    """Accuracy (95% Wilson interval) against median latency (the bar spans the quartiles),
    one marker per format, the recommended file ringed; log scale when latencies spread."""
    from edge_transfer.report import plots

    rows = [r for r in result.artifacts if r.ok and r.accuracy is not None and r.latency_ms]
    points = [(r.latency_ms["p50"] if r.latency_ms else 0.0, r.accuracy or 0.0) for r in rows]
    fig = plots.figure((7, 4.5))
    ax = fig.subplots()
    for fmt, (marker, colour) in plots.styles(sorted({r.format for r in rows})).items():
        mine = [(r, p) for r, p in zip(rows, points, strict=True) if r.format == fmt]
        ivs = [stats.wilson(round(p[1] * r.samples), r.samples) for r, p in mine]
        ax.errorbar([p[0] for _, p in mine], [p[1] for _, p in mine],
                    xerr=[[_spread(r, p[0])[0] for r, p in mine],
                          [_spread(r, p[0])[1] for r, p in mine]],
                    yerr=[[max(0.0, p[1] - iv.low) for (_, p), iv in zip(mine, ivs, strict=True)],
                          [max(0.0, iv.high - p[1]) for (_, p), iv in zip(mine, ivs,
                                                                          strict=True)]],
                    fmt=marker, color=colour, ecolor=colour, elinewidth=1, capsize=3,
                    label=fmt, alpha=0.8)
    log_x = bool(points) and max(p[0] for p in points) > 8 * max(min(p[0] for p in points),
                                                                 1e-9)
    for r, point, lift in zip(rows, points, plots.label_lifts(points, log_x), strict=True):
        ax.annotate(r.name, point, textcoords="offset points", xytext=(5, 4 + 9 * lift),
                    fontsize=7)
        if rec is not None and r.name == rec.artifact:
            ax.scatter([point[0]], [point[1]], s=260, facecolors="none", edgecolors="black",
                       linewidths=1.5, label="recommended", zorder=4)
    if log_x:
        ax.set_xscale("log")
    emulated = " (qemu emulation: not an ARM core's timing)" if result.device.emulated else ""
    ax.set_xlabel(f"median latency, ms per image (bar: quartiles){emulated}")
    ax.set_ylabel("accuracy on the device, 95% interval")
    ax.set_title(f"accuracy against latency on {result.device.name}"
                 + ("" if rows else " (no artifact measured)"))
    ax.margins(x=0.15, y=0.25)
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(fontsize=8, loc="best", framealpha=0.8)
    plots.save(fig, path)


def _spread(row: ValidationRow, p50: float) -> tuple[float, float]:
    """How far the quartiles lie below and above the median (0 when not measured)."""
    latency = row.latency
    if latency is None or latency.q25 is None or latency.q75 is None:
        return 0.0, 0.0
    return max(0.0, p50 - latency.q25), max(0.0, latency.q75 - p50)


def write_plots(validations: Sequence[ValidationResult],
                recs: Sequence[Recommendation], out_dir: Path) -> tuple[str, ...]:
    """One accuracy-against-latency plot per device; their file names."""
    names = []
    for i, (result, rec) in enumerate(zip(validations, recs, strict=True)):
        name = plot_name(i, result.device.name)
        plot_accuracy_vs_latency(result, rec, out_dir / name)
        names.append(name)
    return tuple(names)


def markdown(validations: Sequence[ValidationResult], recs: Sequence[Recommendation],
             plots: Sequence[str]) -> list[str]:
    """The report's "Which file to deploy" section: per device, the file, why, the trades."""

    if not validations:
        return []
    lines = ["## Which file to deploy", ""]
    for result, rec, plot in zip(validations, recs, plots, strict=True):
        profile = f", profile {rec.profile}" if rec.profile else ""
        lines += [f"### {result.device.name} ({result.device.arch or '?'}{profile})", "",
                  f"- **recommended: {rec.artifact or 'none'}**: {rec.reason}",
                  f"- ranked by {rec.basis}"]
        timed = next((r.latency for r in result.artifacts if r.latency), None)
        if timed:
            lines.append(f"- latency: one image at a time, {timed.warmup} warm-up then "
                         f"{timed.runs} timed runs, median and IQR, "
                         f"{timed.threads or '?'} threads (e.g. {timed.describe()})")
        lines += [f"- {t}" for t in rec.trades]
        lines += [f"- not {k}: {v}" for k, v in rec.excluded.items()]
        lines += ["", f"![accuracy against latency on {result.device.name}]({plot})", ""]
    lines += [HOW_TO_READ + "a file qualifies when it ran, fits the profile's budgets and "
              "its accuracy is within the tolerance of the float model on the same images "
              "(paired: beyond the tolerance *and* significant fails); of those the fastest "
              "median latency wins (within 5% counts as a tie, the smaller file wins).", ""]
    return lines

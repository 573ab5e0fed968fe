"""Which file to deploy on one device, and the trades worth a line.

The rule, in order: a file qualifies when it ran, fits every budget of the device profile
(storage, memory, latency; a budget not checked, e.g. latency under emulation, does not
exclude), and its accuracy is within the tolerance of the float model, judged paired on the
same images as everywhere in the tool (:func:`edge_transfer.core.stats.decide`: a drop fails when
beyond the tolerance *and* significant). Of those, the fastest measured median latency wins;
latencies within ``TIED`` (5%) of the fastest count as a tie, broken by the smaller file.
Without any latency (nothing measured on this device), the smallest file wins, and the
recommendation says so.

A trade is a line per non-fp32 file against its format's fp32 file when the speed differs
by ``NOTABLE`` (1.2x) or more: ``"tflite-int8 is 1.5x slower than tflite-fp32 on this
device: it saves 62% of the bytes"``.

>>> import numpy as np
>>> right = np.ones(200, bool)
>>> files = [Candidate("tflite-fp32", "tflite", "fp32", 4000, 0.72, right),
...          Candidate("tflite-int8", "tflite", "int8", 1500, 1.08, right)]
>>> rec = recommend(files, right, 0.005, device="local")
>>> rec.artifact, rec.ranking
('tflite-fp32', ('tflite-fp32', 'tflite-int8'))
>>> rec.trades
('tflite-int8 is 1.5x slower than tflite-fp32 on this device: it saves 62% of the bytes',)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_transfer.core import stats
from edge_transfer.core.records.device import Recommendation
from edge_transfer.core.records.validation import ValidationResult, ValidationRow
from edge_transfer.core.samples import SamplesError, decode_or_none

TIED = 1.05       # latencies within 5% of the fastest are a tie: the smaller file wins
NOTABLE = 1.2     # a speed ratio worth a line


@dataclass(frozen=True)
class Candidate:
    """One file as measured on the device: ``correct`` per sample of the shared sample
    (None: not known), median latency in ms (None: not measured), ``unavailable`` why it
    did not run (skipped by the profile, failed), ``over_budget`` the budgets it failed."""

    name: str
    format: str
    precision: str
    bytes: int
    latency_ms: float | None
    correct: np.ndarray | None
    unavailable: str | None = None
    over_budget: tuple[str, ...] = ()


def recommend(
    files: Sequence[Candidate], reference: np.ndarray | None, tolerance: float, *,
    device: str, profile: str | None = None, emulated: bool = False,
    reference_name: str = "the float model", alpha: float = stats.DEFAULT_ALPHA,
) -> Recommendation:
    """The recommendation for ``files`` on one device (see the module for the rule);
    ``reference`` is the float model's per-sample correctness on the same images."""
    excluded: dict[str, str] = {}
    qualified: list[Candidate] = []
    notes: dict[str, str] = {}
    for c in files:
        why, note = _excluded(c, reference, tolerance, alpha, reference_name)
        if why:
            excluded[c.name] = why
        else:
            qualified.append(c)
            notes[c.name] = note
    ranking = _ranked(qualified)
    measured = any(c.latency_ms is not None for c in qualified)
    basis = ("median latency measured under qemu emulation on the workstation: not an ARM "
             "core's timing" if emulated and measured else
             "median latency measured on the device" if measured else
             "no latency measured on this device: the smallest file within the tolerance")
    if not ranking:
        return Recommendation(device=device, profile=profile, emulated=emulated, artifact=None,
                              reason="no file qualifies: " + "; ".join(
                                  f"{k}: {v}" for k, v in excluded.items()),
                              basis=basis, excluded=excluded, trades=_trades(files))
    best = ranking[0]
    speed = (f"fastest ({best.latency_ms:.3f} ms median"
             f"{', emulated' if emulated else ''})" if best.latency_ms is not None
             else "not timed")
    reason = (f"{best.name}: {notes[best.name]}, within the budgets, {speed}, "
              f"{best.bytes:,} bytes")
    return Recommendation(device=device, profile=profile, emulated=emulated,
                          artifact=best.name, reason=reason, basis=basis,
                          trades=_trades(files), excluded=excluded,
                          ranking=tuple(c.name for c in ranking))


def _excluded(c: Candidate, reference: np.ndarray | None, tolerance: float, alpha: float,
              reference_name: str) -> tuple[str | None, str]:
    """(why ``c`` does not qualify or None, how its accuracy compares)."""
    if c.unavailable:
        return c.unavailable, ""
    if c.over_budget:
        return f"over the profile's {', '.join(c.over_budget)} budget", ""
    if reference is None or c.correct is None or len(reference) != len(c.correct):
        return None, "accuracy not paired with float (no float predictions on these images)"
    paired = stats.paired(reference, c.correct)
    decision = stats.decide(paired, tolerance, alpha)
    if decision.verdict == "fail":
        return (f"{paired.describe()} against {reference_name}: {decision.reason} "
                f"({tolerance * 100:.1f}-pt tolerance)"), ""
    return None, (f"{paired.difference * 100:+.1f} pt against {reference_name} "
                  f"(p={stats.format_p(paired.p_value)}, within the "
                  f"{tolerance * 100:.1f}-pt tolerance)")


def _ranked(files: Sequence[Candidate]) -> list[Candidate]:
    """Fastest first (a tie within ``TIED`` goes to the smaller file), then the untimed by
    size."""
    timed = sorted((c for c in files if c.latency_ms is not None),
                   key=lambda c: (c.latency_ms, c.bytes))
    untimed = sorted((c for c in files if c.latency_ms is None), key=lambda c: c.bytes)
    if not timed:
        return untimed
    fastest = timed[0].latency_ms or 0.0
    tied = sorted((c for c in timed if (c.latency_ms or 0.0) <= fastest * TIED),
                  key=lambda c: c.bytes)
    return tied + [c for c in timed if c not in tied] + untimed


def _trades(files: Sequence[Candidate]) -> tuple[str, ...]:
    """One line per file whose speed differs notably from its format's fp32 file."""
    ran = [c for c in files if c.latency_ms and not c.unavailable]
    base = {c.format: c for c in ran if c.precision == "fp32"}
    out = []
    for c in ran:
        ref = base.get(c.format)
        if ref is None or c is ref or not ref.latency_ms or not c.latency_ms:
            continue
        ratio = c.latency_ms / ref.latency_ms
        saved = 1 - c.bytes / ref.bytes if ref.bytes else 0.0
        size = (f"saves {saved:.0%} of the bytes" if saved > 0 else
                f"is {-saved:.0%} larger" if saved < 0 else "is the same size")
        if ratio >= NOTABLE:
            out.append(f"{c.name} is {ratio:.1f}x slower than {ref.name} on this device: "
                       f"it {size}")
        elif ratio <= 1 / NOTABLE and not math.isclose(ratio, 0):
            out.append(f"{c.name} is {1 / ratio:.1f}x faster than {ref.name} on this device "
                       f"and {size.replace('is ', '')}")
    return tuple(out)


# --------------------------------------------------------------------------- validation rows


def recommend_result(result: ValidationResult, float_top1: str | None, tolerance: float
                     ) -> Recommendation:
    """The recommendation for the device ``result`` was measured on; ``float_top1`` is the
    float model's top-1 on the same images (encoded), else the device's own fp32 file is the
    reference, and the recommendation says so."""
    labels = sample_labels(result)
    reference, name = correct(float_top1, labels), "the float model"
    if reference is None:
        for row in result.artifacts:
            if row.ok and row.precision == "fp32" and \
                    (reference := correct(row.predictions, labels)) is not None:
                name = f"{row.name} on the device (no float predictions on these images)"
                break
    files = [candidate(row, labels) for row in result.artifacts]
    device = result.device
    qemu = device.emulated and device.host_arch is not None   # emulated:arm64 under qemu
    rec = recommend(files, reference, tolerance, device=device.name, profile=device.profile,
                    emulated=device.emulated, reference_name=name)
    if device.emulated and not qemu and any(f.latency_ms for f in files):
        rec = dataclasses.replace(rec, basis=f"median latency measured on this {device.arch} "
                                  f"machine, not on the profile's architecture")
    return rec


def sample_labels(result: ValidationResult) -> np.ndarray | None:
    """The true labels of the samples ``result``'s rows ran on, when known."""
    try:
        return result.samples.label_array() if result.samples else None
    except SamplesError:
        return None


def correct(predictions: str | None, labels: np.ndarray | None) -> np.ndarray | None:
    """Per-sample correctness of encoded top-1 ``predictions`` (None when they do not pair)."""
    top1 = decode_or_none(predictions)
    if top1 is None or labels is None or len(top1) != len(labels):
        return None
    return np.asarray(top1 == labels)


def candidate(row: ValidationRow, labels: np.ndarray | None) -> Candidate:
    """One validation row as a candidate: its failed budget checks, its median latency."""
    unavailable = None if row.ok else f"{row.status}: {row.reason or 'no reason recorded'}"
    over = tuple(c.name for c in row.checks if c.status == "fail")
    latency = row.latency.p50 if row.latency else (row.latency_ms or {}).get("p50")
    return Candidate(row.name, row.format, row.precision, row.bytes or 0,
                     latency if row.ok else None, correct(row.predictions, labels),
                     unavailable=unavailable, over_budget=over)

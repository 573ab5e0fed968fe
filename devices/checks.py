"""A profile's budgets -> pass / fail / skip rows for one validated artifact.

>>> from devices.profile import load_profile
>>> from edge_transfer.core.records.validation import ValidationRow
>>> row = ValidationRow(name="tflite-int8", format="tflite", precision="int8", status="ok",
...                     bytes=30_000, peak_memory_mb=80.0, latency_ms={"p90": 0.2},
...                     accuracy=0.97, workstation_accuracy=0.975)
>>> [c.status for c in budget_checks(row, load_profile("generic-x86-64"), 0.005, False)]
['pass', 'pass', 'pass', 'pass']
"""

from __future__ import annotations

from typing import Any

from devices.profile import DeviceProfile
from edge_transfer.core.records.validation import BudgetCheck, ValidationRow

MB = 1024 * 1024
BUDGETS = ("storage", "memory", "latency", "accuracy")


def check(name: str, status: str, value: Any, limit: Any, detail: str) -> BudgetCheck:
    return BudgetCheck(name=name, status=status, value=value, limit=limit, detail=detail)


def _compare(name: str, value: float, limit: float, what: str, unit: str) -> BudgetCheck:
    ok = value <= limit
    sign = "<=" if ok else ">"
    return check(name, "pass" if ok else "fail", value, limit,
                 f"{what} {value:.4g} {unit} {sign} {limit:.4g} {unit}")


def skipped(reason: str) -> tuple[BudgetCheck, ...]:
    """Every budget skipped for ``reason`` (an artifact the device does not run)."""
    return tuple(check(n, "skip", None, None, reason) for n in BUDGETS)


def budget_checks(
    row: ValidationRow,
    profile: DeviceProfile | None,
    tolerance: float,
    emulated: bool,
    accuracy_reason: str | None = None,
) -> tuple[BudgetCheck, ...]:
    """storage, memory, latency, accuracy rows for a row that ran (see validation JSON)."""
    assert row.accuracy is not None and row.latency_ms is not None, "a row that ran"
    rows = []
    if profile is None:
        reason = "no device profile given; pass --profile NAME|FILE to check budgets"
        rows += [check(n, "skip", None, None, reason) for n in BUDGETS[:3]]
    else:
        rows.append(_compare("storage", (row.bytes or 0) / MB, profile.storage_mb,
                             "model file", "MB"))
        rows.append(_compare("memory", row.peak_memory_mb or 0.0, profile.ram_mb,
                             "peak process memory", "MB"))
        if emulated:
            rows.append(check("latency", "skip", row.latency_ms["p90"],
                              profile.latency_budget_ms,
                              f"measured on another architecture than {profile.arch}; "
                              "run on the device (--device ssh://...) to check latency"))
        else:
            rows.append(_compare("latency", row.latency_ms["p90"],
                                 profile.latency_budget_ms, "p90 latency", "ms"))
    reference = row.workstation_accuracy
    if accuracy_reason or reference is None:
        rows.append(check("accuracy", "skip", row.accuracy, tolerance,
                          accuracy_reason or "the bundle has no workstation accuracy"))
    else:
        diff = abs(row.accuracy - reference)
        ok = diff <= tolerance + 1e-12
        rows.append(check(
            "accuracy", "pass" if ok else "fail", diff, tolerance,
            f"device {row.accuracy:.4f} vs workstation {reference:.4f}: "
            f"{'within' if ok else 'outside'} the tolerance of {tolerance:.4f}"))
    return tuple(rows)

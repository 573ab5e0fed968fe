"""The regression gate: compare a report with a baseline report, row by row (by artifact name).

Each artifact row of the baseline is held to these criteria; any failure is a regression:

    present       the artifact is still in the report (a row that disappeared fails)
    status        ok in the baseline and still ok (failed now but ok then fails)
    accuracy      workstation accuracy dropped by at most ``max_accuracy_drop`` (absolute)
    device_accuracy  the same for the accuracy measured on the device
    size          bytes grew by at most ``max_size_growth`` (relative)
    device_gap    |device accuracy - workstation accuracy| now at most ``max_device_gap``
    budget:NAME   a device budget (storage, memory, latency, accuracy) that passed then passes now

A figure the baseline has and the report lacks fails too (it is no longer measured).
Reports of different data (fingerprint) are refused unless ``allow_different_data``.

Not run as a doctest (it needs two report.json files; tests/test_check.py builds them):

>>> result = check(load_report("report.json"), load_report("baseline.json"),
...                Tolerances())                                   # doctest: +SKIP
>>> result.ok, [f.message for f in result.regressions]            # doctest: +SKIP
(False, ['tflite-int8: accuracy 0.970 -> 0.940 (-3.0 pt, limit -1.0 pt)'])
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_transfer.errors import DataError, UserError
from edge_transfer.records import MalformedRecord, Report, ReportRow

Verdict = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Tolerances:
    """How much worse than the baseline is still fine."""

    max_accuracy_drop: float = 0.01     # absolute fraction (0.01 = 1 point)
    max_size_growth: float = 0.05       # relative (0.05 = 5 % more bytes)
    max_device_gap: float = 0.005       # absolute fraction
    allow_different_data: bool = False

    def __post_init__(self) -> None:
        for name in ("max_accuracy_drop", "max_size_growth", "max_device_gap"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} is negative; give a value >= 0")


@dataclass(frozen=True)
class Finding:
    """One criterion on one artifact row."""

    artifact: str
    criterion: str
    verdict: Verdict
    baseline: float | str | None = None
    current: float | str | None = None
    change: float | None = None
    limit: float | None = None
    message: str = ""


@dataclass(frozen=True)
class CheckResult:
    findings: tuple[Finding, ...]
    data_fingerprint: str
    baseline_fingerprint: str

    @property
    def regressions(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.verdict == "fail")

    @property
    def ok(self) -> bool:
        return not self.regressions

    @property
    def artifacts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.artifact for f in self.findings))


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json checked as a :class:`~edge_transfer.records.Report` (schema version,
    types), as its JSON object; UserError if it cannot be used. ``Report.load`` gives the
    record itself; :func:`check` takes either."""
    report = Report.load(path, fix="write it with `edge-transfer report RUN`")
    if not report.data_fingerprint:
        raise UserError(f"{path} is not a report (no data_fingerprint); "
                        "write it with `edge-transfer report RUN`")
    return report.to_dict()


def _as_report(name: str, data: Report | Mapping[str, Any]) -> Report:
    if isinstance(data, Report):
        return data
    try:
        return Report.from_dict(data)
    except MalformedRecord as exc:
        raise UserError(f"the {name} is not a usable report ({exc}); build it again with "
                        "`edge-transfer report RUN`") from exc


def check(report: Report | Mapping[str, Any], baseline: Report | Mapping[str, Any],
          tolerances: Tolerances | None = None) -> CheckResult:
    """Compare ``report`` with ``baseline`` row by row; see the module docstring.

    Either may be a :class:`~edge_transfer.records.Report` or its JSON object.
    """
    tolerances = tolerances or Tolerances()
    report, baseline = _as_report("report", report), _as_report("baseline", baseline)
    now_fp, base_fp = report.data_fingerprint, baseline.data_fingerprint
    if now_fp != base_fp and not tolerances.allow_different_data:
        raise DataError(f"the report and the baseline were made from different data "
                        f"(fingerprint {now_fp} != {base_fp}); compare reports of the same data, "
                        "or pass --allow-different-data")
    rows = {r.name: r for r in report.artifacts}
    findings: list[Finding] = []
    for base in baseline.artifacts:
        findings += _compare(base, rows.get(base.name), tolerances)
    known = {b.name for b in baseline.artifacts}
    findings += [Finding(name, "present", "pass", None, "new",
                         message=f"{name}: new artifact, not in the baseline")
                 for name in rows if name not in known]
    return CheckResult(tuple(findings), now_fp, base_fp)


def _compare(base: ReportRow, now: ReportRow | None, tol: Tolerances) -> list[Finding]:
    name = base.name
    if now is None:
        return [Finding(name, "present", "fail", "present", "missing",
                        message=f"{name}: in the baseline but missing from the report")]
    out = [Finding(name, "present", "pass", "present", "present")]
    if base.status == "ok" and now.status != "ok":
        return [*out, Finding(name, "status", "fail", "ok", now.status,
                              message=f"{name}: ok in the baseline, failed now: "
                                      f"{now.reason or 'no reason recorded'}")]
    if base.status != "ok":
        return [*out, Finding(name, "status", "skip", base.status, now.status,
                              message=f"{name}: failed in the baseline too; figures not compared")]
    out.append(Finding(name, "status", "pass", "ok", "ok"))
    out.append(_drop(name, "accuracy", base.workstation_accuracy, now.workstation_accuracy,
                     tol.max_accuracy_drop))
    out.append(_drop(name, "device_accuracy", base.device_accuracy, now.device_accuracy,
                     tol.max_accuracy_drop))
    out.append(_growth(name, base.bytes, now.bytes, tol.max_size_growth))
    out.append(_gap(name, now.device_gap, base.device_gap, tol.max_device_gap))
    return out + _budgets(name, base.checks, now.checks)


def _budgets(name: str, base: Mapping[str, str], now: Mapping[str, str]) -> list[Finding]:
    """A device budget that passed in the baseline must still pass."""
    findings = []
    for budget, before in base.items():
        after = now.get(budget)
        failed = before == "pass" and after != "pass"
        findings.append(Finding(
            name, f"budget:{budget}", "fail" if failed else "pass" if before == "pass" else "skip",
            before, after,
            message=f"{name}: {budget} budget passed in the baseline, {after or 'missing'} now"
            if failed else "",
        ))
    return findings


def _missing(name: str, criterion: str, base: Any, now: Any) -> Finding | None:
    if base is None:
        return Finding(name, criterion, "skip", None, now,
                       message=f"{name}: {criterion} not in the baseline")
    if now is None:
        return Finding(name, criterion, "fail", base, None,
                       message=f"{name}: {criterion} was {base} in the baseline and is missing now")
    return None


def _drop(name: str, criterion: str, base: float | None, now: float | None,
          limit: float) -> Finding:
    missing = _missing(name, criterion, base, now)
    if missing is not None or base is None or now is None:
        return missing or Finding(name, criterion, "skip")
    change = now - base
    verdict: Verdict = "fail" if -change > limit + 1e-12 else "pass"
    return Finding(name, criterion, verdict, base, now, change, limit,
                   f"{name}: {criterion.replace('_', ' ')} {base:.4f} -> {now:.4f} "
                   f"({change * 100:+.2f} pt, limit -{limit * 100:.2f} pt)")


def _growth(name: str, base: int | None, now: int | None, limit: float) -> Finding:
    missing = _missing(name, "size", base, now)
    if missing is not None or base is None or now is None:
        return missing or Finding(name, "size", "skip")
    change = now / base - 1 if base else 0.0
    verdict: Verdict = "fail" if change > limit + 1e-12 else "pass"
    return Finding(name, "size", verdict, base, now, change, limit,
                   f"{name}: size {base:,} -> {now:,} bytes ({change:+.1%}, limit +{limit:.1%})")


def _gap(name: str, now: float | None, base: float | None, limit: float) -> Finding:
    if now is None:
        return _missing(name, "device_gap", base, now) or Finding(
            name, "device_gap", "skip", message=f"{name}: no device accuracy")
    verdict: Verdict = "fail" if abs(now) > limit + 1e-12 else "pass"
    return Finding(name, "device_gap", verdict, base, now, now, limit,
                   f"{name}: device vs workstation accuracy {now * 100:+.2f} pt "
                   f"(limit ±{limit * 100:.2f} pt)")


# ---------------------------------------------------------------- outputs for CI

def junit_xml(result: CheckResult, suite: str = "edge-transfer check") -> str:
    """JUnit XML: one testcase per artifact x criterion, regressions as failures."""
    cases = result.findings
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                       failures=str(len(result.regressions)), errors="0",
                       skipped=str(sum(f.verdict == "skip" for f in cases)))
    for f in cases:
        case = ET.SubElement(ts, "testcase", classname=f.artifact, name=f.criterion)
        if f.verdict == "fail":
            ET.SubElement(case, "failure", message=f.message, type="regression").text = f.message
        elif f.verdict == "skip":
            ET.SubElement(case, "skipped", message=f.message)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write_junit(result: CheckResult, path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--junit {path} is a folder; give a file name such as check.xml")
    from edge_transfer.atomic import write_text_atomic

    write_text_atomic(path, junit_xml(result), parents=True)
    return path


def markdown_summary(result: CheckResult, tolerances: Tolerances) -> str:
    """A short Markdown summary for the CI job page."""
    head = ("### edge-transfer check: " +
            ("all holds" if result.ok else f"{len(result.regressions)} regression(s)"))
    lines = [head, "",
             f"{len(result.artifacts)} artifacts, {len(result.findings)} checks; tolerances: "
             f"accuracy drop {tolerances.max_accuracy_drop:g}, size growth "
             f"{tolerances.max_size_growth:g}, device gap {tolerances.max_device_gap:g}", ""]
    if result.regressions:
        lines += ["| artifact | criterion | baseline | now | what |", "|---|---|---|---|---|"]
        lines += [f"| {f.artifact} | {f.criterion} | {_cell(f.baseline)} | {_cell(f.current)} "
                  f"| {f.message.replace('|', '/')} |" for f in result.regressions]
        lines.append("")
    return "\n".join(lines)


def append_step_summary(result: CheckResult, tolerances: Tolerances,
                        environ: Mapping[str, str] = os.environ) -> Path | None:
    """Append the summary to ``$GITHUB_STEP_SUMMARY`` when it is set (GitHub Actions)."""
    target = environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(markdown_summary(result, tolerances) + "\n")
    return Path(target)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def criteria_table(findings: Sequence[Finding]) -> list[list[str]]:
    """Rows for a terminal table: artifact, criterion, baseline, now, change, limit."""
    def change(f: Finding) -> str:
        if f.change is None:
            return "—"
        return f"{f.change:+.1%}" if f.criterion == "size" else f"{f.change * 100:+.2f} pt"

    def limit(f: Finding) -> str:
        if f.limit is None:
            return "—"
        return f"+{f.limit:.1%}" if f.criterion == "size" else f"{f.limit * 100:.2f} pt"

    return [[f.artifact, f.criterion, _cell(f.baseline), _cell(f.current), change(f), limit(f),
             f.message] for f in findings]

"""The regression gate: compare a report with a baseline report, row by row (by artifact name).

Each artifact row of the baseline is held to these criteria; any failure is a regression:

    present       the artifact is still in the report (a row that disappeared fails)
    status        ok in the baseline and still ok (failed now but ok then fails)
    accuracy      workstation accuracy dropped by at most ``max_accuracy_drop`` (absolute)
    device_accuracy  the same for the accuracy measured on the device
    size          bytes grew by at most ``max_size_growth`` (relative)
    device_gap    |device accuracy - workstation accuracy| now at most ``max_device_gap``
    chance        not at chance or predicting one class now, unless the baseline was
    budget:NAME   a device budget (storage, memory, latency, accuracy) that passed then passes now
    client:NAME   a deploy client (``validate --client``) that ran the file then runs it now

Accuracy figures are compared pair by pair when both reports kept per-sample predictions on
the same samples: a change fails when it is beyond its limit *and* significant at ``alpha``
(exact McNemar; ``decide="point"``: beyond the limit alone). Each such finding carries the
paired difference's 95% interval and p-value, and a note when the samples are too few to
resolve a change of the limit's size. Without per-sample predictions (older reports) the
point estimates are compared, and the message says so.

A figure the baseline has and the report lacks fails too (it is no longer measured).
Reports of different data (fingerprint) are refused unless ``allow_different_data``.

Not run as a doctest (it needs two report.json files; tests/test_check.py builds them):

>>> result = check(load_report("report.json"), load_report("baseline.json"),
...                Tolerances())                                   # doctest: +SKIP
>>> result.ok, [f.message for f in result.regressions]            # doctest: +SKIP
(False, ['tflite-int8: accuracy 0.9700 -> 0.9400 (-3.0 pt [-3.6, -2.4], p=<0.001 (lost 150, ...'])
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_transfer.core import stats
from edge_transfer.core.errors import ConfigError, DataError, UserError
from edge_transfer.core.fields import option
from edge_transfer.core.records.base import MalformedRecord
from edge_transfer.core.records.incremental import IncrementalHistory
from edge_transfer.core.records.report import Report, ReportRow
from edge_transfer.report import comparisons

Verdict = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Tolerances:
    """How much worse than the baseline is still fine."""

    max_accuracy_drop: float = option(0.01, "accuracy may drop this much, absolute (0.01 = 1 "
                                            "point)", metavar="FRACTION")
    max_size_growth: float = option(0.05, "a file may grow this much, relative (0.05 = 5%)",
                                    metavar="FRACTION")
    max_device_gap: float = option(0.005, "device accuracy may differ from the workstation's "
                                          "this much, absolute", metavar="FRACTION")
    allow_different_data: bool = option(False, "compare reports whose data fingerprints "
                                               "differ")
    max_old_class_drop: float = option(0.03, "an extended run (`edge-transfer extend`): "
                                             "the old classes' accuracy may drop this much "
                                             "from before the step, absolute",
                                       metavar="FRACTION")
    alpha: float = option(stats.DEFAULT_ALPHA, "significance level of an accuracy change, "
                                               "paired on the same samples (exact McNemar)")
    decide: stats.Rule = option("significant", "significant: an accuracy change beyond its "
                                               "limit fails only when significant at --alpha; "
                                               "point: the point estimate alone decides",
                                choices=stats.RULES)

    def __post_init__(self) -> None:
        for name in ("max_accuracy_drop", "max_size_growth", "max_device_gap",
                     "max_old_class_drop"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} is negative; give a value >= 0")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"--alpha {self.alpha} is not in (0, 1); 0.05 is usual")
        if self.decide not in stats.RULES:
            raise ConfigError(f"--decide {self.decide!r} is not one of {', '.join(stats.RULES)}")


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
    interval: tuple[float, float] | None = None   # 95% interval of ``change`` (paired)
    p_value: float | None = None                  # exact McNemar, same samples
    note: str | None = None                       # e.g. too few samples to resolve the limit


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
    """A report.json checked as a :class:`~edge_transfer.core.records.Report` (schema version,
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

    Either may be a :class:`~edge_transfer.core.records.Report` or its JSON object.
    """
    tolerances = tolerances or Tolerances()
    report, baseline = _as_report("report", report), _as_report("baseline", baseline)
    now_fp, base_fp = report.data_fingerprint, baseline.data_fingerprint
    if now_fp != base_fp and not tolerances.allow_different_data:
        raise DataError(f"the report and the baseline were made from different data "
                        f"(fingerprint {now_fp} != {base_fp}); compare reports of the same data, "
                        "or pass --allow-different-data")
    rows = {r.name: r for r in report.artifacts}
    pairs = _Pairs(report, baseline)
    findings: list[Finding] = []
    for base in baseline.artifacts:
        findings += _compare(base, rows.get(base.name), tolerances, pairs)
    known = {b.name for b in baseline.artifacts}
    findings += [Finding(name, "present", "pass", None, "new",
                         message=f"{name}: new artifact, not in the baseline")
                 for name in rows if name not in known]
    if report.incremental is not None:
        findings.append(old_class_finding(report.incremental, tolerances))
    return CheckResult(tuple(findings), now_fp, base_fp)


@dataclass(frozen=True)
class _Pairs:
    """Which per-sample predictions of the two reports can be compared pair by pair."""

    report: Report
    baseline: Report

    @property
    def same_test_samples(self) -> bool:
        return (self.report.samples is not None
                and self.report.samples.same_samples(self.baseline.samples))

    @property
    def same_device_samples(self) -> bool:
        return (self.report.device_samples is not None
                and self.report.device_samples.same_samples(self.baseline.device_samples))


def _compare(base: ReportRow, now: ReportRow | None, tol: Tolerances,
             pairs: _Pairs) -> list[Finding]:
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
    test, device = pairs.report.samples, pairs.report.device_samples
    out.append(_drop(name, "accuracy", base.workstation_accuracy, now.workstation_accuracy,
                     tol, comparisons.paired_difference(
                         test, base.predictions, now.predictions)
                     if pairs.same_test_samples else None))
    out.append(_drop(name, "device_accuracy", base.device_accuracy, now.device_accuracy,
                     tol, comparisons.paired_difference(
                         device, base.device_predictions, now.device_predictions)
                     if pairs.same_device_samples else None))
    out.append(_growth(name, base.bytes, now.bytes, tol.max_size_growth))
    out.append(_gap(name, now.device_gap, base.device_gap, tol, comparisons.paired_difference(
        device, now.reference_predictions, now.device_predictions)))
    out.append(_chance(name, base, now, pairs))
    return out + _budgets(name, base.checks, now.checks) + _clients(base, now)


def _health(row: ReportRow, report: Report) -> str | None:
    """The row's at-chance / one-class line, from its predictions or else its interval."""
    line = comparisons.health(report.samples, row.predictions, report.labels, row.name)
    if line or row.predictions is not None:
        return line
    classes = len(report.labels)
    iv = comparisons.interval_of(row.workstation_accuracy,
                                 report.samples.count if report.samples else None)
    if iv is not None and stats.at_chance(iv, classes):
        return f"{row.name} is at chance: accuracy {iv.points()} contains 1/{classes}"
    return None


def _chance(name: str, base: ReportRow, now: ReportRow, pairs: _Pairs) -> Finding:
    """A model that fell to chance (or onto one class) is a regression, unless the baseline
    was there already."""
    now_line = _health(now, pairs.report)
    if now_line is None:
        return Finding(name, "chance", "pass")
    base_line = _health(base, pairs.baseline)
    if base_line is not None:
        return Finding(name, "chance", "skip", base_line, now_line,
                       message=f"{name}: at chance in the baseline too ({base_line})")
    return Finding(name, "chance", "fail", "above chance", "at chance",
                   message=f"{name}: {now_line}, and was not in the baseline")


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


def _clients(base: ReportRow, now: ReportRow) -> list[Finding]:
    """A deploy client that ran the file in the baseline must still run it (a client not
    run now fails too: it is no longer shown to work there)."""
    ran = {c.client: c for c in now.clients}
    findings = []
    for before in base.clients:
        criterion, after = f"client:{before.client}", ran.get(before.client)
        if not before.ok:
            findings.append(Finding(base.name, criterion, "skip", before.status,
                                    after.status if after else None))
        elif after is None:
            findings.append(Finding(
                base.name, criterion, "fail", "ok", None,
                message=f"{base.name}: ran in {before.client} in the baseline, not run in "
                        f"{before.client} now: validate with --client {before.client}"))
        elif not after.ok:
            findings.append(Finding(
                base.name, criterion, "fail", "ok", after.status,
                message=f"{base.name}: ran in {before.client} in the baseline, "
                        f"{after.status} now: {after.reason or 'no reason recorded'}"))
        else:
            findings.append(Finding(base.name, criterion, "pass", "ok", "ok"))
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
          tol: Tolerances, paired: stats.Paired | None) -> Finding:
    """An accuracy drop: paired on the same samples when both reports kept per-sample
    predictions (beyond the tolerance and significant fails, see :func:`stats.decide`), else
    the point estimates (beyond the tolerance fails), which the message says."""
    limit = tol.max_accuracy_drop
    missing = _missing(name, criterion, base, now)
    if missing is not None or base is None or now is None:
        return missing or Finding(name, criterion, "skip")
    what = f"{name}: {criterion.replace('_', ' ')} {base:.4f} -> {now:.4f}"
    if paired is None:
        change = now - base
        verdict: Verdict = "fail" if -change > limit + 1e-12 else "pass"
        return Finding(name, criterion, verdict, base, now, change, limit,
                       f"{what} ({change * 100:+.2f} pt, limit -{limit * 100:.2f} pt; no "
                       "per-sample predictions on the same samples: point estimates compared)")
    decision = stats.decide(paired, limit, tol.alpha, tol.decide)
    return Finding(name, criterion, decision.verdict, base, now, paired.difference, limit,
                   f"{what} ({paired.describe()}; limit -{limit * 100:.2f} pt: "
                   f"{decision.reason})",
                   interval=(paired.interval.low, paired.interval.high),
                   p_value=paired.p_value, note=decision.underpowered)


def _growth(name: str, base: int | None, now: int | None, limit: float) -> Finding:
    missing = _missing(name, "size", base, now)
    if missing is not None or base is None or now is None:
        return missing or Finding(name, "size", "skip")
    change = now / base - 1 if base else 0.0
    verdict: Verdict = "fail" if change > limit + 1e-12 else "pass"
    return Finding(name, "size", verdict, base, now, change, limit,
                   f"{name}: size {base:,} -> {now:,} bytes ({change:+.1%}, limit +{limit:.1%})")


def _gap(name: str, now: float | None, base: float | None, tol: Tolerances,
         paired: stats.Paired | None) -> Finding:
    """The device against the workstation on the same samples, either way: paired when the
    report kept both sides' predictions, else the point estimates."""
    limit = tol.max_device_gap
    if now is None:
        return _missing(name, "device_gap", base, now) or Finding(
            name, "device_gap", "skip", message=f"{name}: no device accuracy")
    if paired is None:
        verdict: Verdict = "fail" if abs(now) > limit + 1e-12 else "pass"
        return Finding(name, "device_gap", verdict, base, now, now, limit,
                       f"{name}: device vs workstation accuracy {now * 100:+.2f} pt "
                       f"(limit ±{limit * 100:.2f} pt; point estimates compared)")
    beyond = abs(paired.difference) > limit + 1e-12
    significant = paired.p_value < tol.alpha or tol.decide == "point"
    verdict = "fail" if beyond and significant else "pass"
    why = ("beyond the limit" + (" and significant" if tol.decide != "point" else "")
           if verdict == "fail" else "within the limit" if not beyond else
           f"beyond the limit but not significant (p={stats.format_p(paired.p_value)} >= "
           f"{tol.alpha:g})")
    return Finding(name, "device_gap", verdict, base, paired.difference, paired.difference,
                   limit, f"{name}: device vs workstation accuracy {paired.describe()} "
                   f"(limit ±{limit * 100:.2f} pt: {why})",
                   interval=(paired.interval.low, paired.interval.high),
                   p_value=paired.p_value)


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
        elif f.p_value is not None:  # a paired comparison that held: its figures, for the log
            ET.SubElement(case, "system-out").text = f.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write_junit(result: CheckResult, path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--junit {path} is a folder; give a file name such as check.xml")
    from edge_transfer.core.atomic import write_text_atomic

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
    paired = [f for f in result.findings if f.p_value is not None and f.interval is not None]
    if paired:
        lines += ["| artifact | criterion | change | 95% interval | p | verdict |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {f.artifact} | {f.criterion} | {(f.change or 0) * 100:+.1f} pt | "
                  f"[{f.interval[0] * 100:+.1f}, {f.interval[1] * 100:+.1f}] | "
                  f"{stats.format_p(f.p_value)} | {f.verdict} |"
                  for f in paired if f.interval is not None and f.p_value is not None]
        lines += ["", "Changes are paired (the same samples in both reports); a change fails "
                  f"when it is beyond its limit and significant (p < {tolerances.alpha:g}"
                  f"{', point rule' if tolerances.decide == 'point' else ''}).", ""]
    lines += [f"> {n}" for n in notes(result)]
    return "\n".join(lines)


def notes(result: CheckResult) -> list[str]:
    """The distinct notes of the findings (e.g. too few samples to resolve a limit), once."""
    return list(dict.fromkeys(f.note for f in result.findings if f.note))


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


def old_class_finding(history: IncrementalHistory, tol: Tolerances) -> Finding:
    """``check``'s finding on an extended run: the old classes' accuracy after the last step
    against before it, on the same test images (fails beyond ``tol.max_old_class_drop`` and
    significantly, see :func:`edge_transfer.core.stats.decide`)."""
    last = history.last
    name = f"step {last.step}"
    if last.old_change is None or last.old_before is None or not last.old_samples:
        return Finding(name, "old_classes", "skip", message=f"{name}: no old classes")
    change, n = last.old_change, last.old_samples
    right_before = round(last.old_before * n)
    paired = stats.paired_counts(right_before - change.lost, change.lost, change.gained,
                                 n - right_before - change.gained)
    limit = tol.max_old_class_drop
    decision = stats.decide(paired, limit, tol.alpha, tol.decide)
    return Finding(name, "old_classes", decision.verdict, last.old_before, last.old_accuracy,
                   paired.difference, limit,
                   f"{name}: old classes {last.old_before:.4f} -> {last.old_accuracy:.4f} "
                   f"({paired.describe()}; limit -{limit * 100:.2f} pt: {decision.reason})",
                   interval=(paired.interval.low, paired.interval.high),
                   p_value=paired.p_value, note=decision.underpowered)

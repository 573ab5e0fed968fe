"""The report as Markdown (``report.md``) and its artifact table's cells, shared with the
terminal table of ``edge-transfer report``: one function per section, each with a "how to read
this" line under its table. The report record it renders is built by
:mod:`edge_transfer.report.build`.

A figure nobody measured is "—", never invented:

>>> table_cells(ReportRow(name="onnx-int8-qat", status="failed"))[:6]
['onnx-int8-qat', '—', '—', 'failed', '—', '—']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edge_transfer.core import stats
from edge_transfer.core.records.incremental import IncrementalHistory
from edge_transfer.core.records.paired import Comparison
from edge_transfer.core.records.report import Report, ReportFiles, ReportRow, TransferFigures
from edge_transfer.report import comparisons
from exporters.steps import which_step

MISSING = "—"
HOW_TO_READ = "*How to read this:* "


def render_markdown(report: Report) -> str:
    """The report as Markdown: summary, warnings, transfer figures, the artifact table, what
    quantization changed per class, failures; a "how to read this" line under each table."""
    sections: tuple[Callable[[Report], list[str]], ...] = (
        _summary, _warnings, _transfer, _incremental, _artifacts, _class_table, _steps,
        lambda r: client_table(r.artifacts), _failed, _figures)
    return "\n".join(line for section in sections for line in section(report))


def _section(title: str, body: Sequence[str], note: str | None = None) -> list[str]:
    """``## title``, its lines, and the "how to read this" ``note`` under them."""
    lines = [f"## {title}", "", *body, ""]
    return [*lines, HOW_TO_READ + note, ""] if note else lines


def _summary(report: Report) -> list[str]:
    device, samples = report.device, report.samples
    where = f"test split, {samples.count:,} samples" if samples else "test split"
    return [
        "# edge-transfer report", "",
        f"- run: `{report.run}`",
        f"- data fingerprint: `{report.data_fingerprint}`",
        f"- float model accuracy ({where}): "
        f"{_with_interval(report.float_accuracy, report.float_interval)}",
        f"- device: {device.name} ({device.profile or MISSING}, {device.arch or MISSING})"
        if device else "- device: not validated",
        "",
    ]


def _warnings(report: Report) -> list[str]:
    return _section("Warnings", [f"- ⚠ {w}" for w in report.warnings]) if report.warnings else []


def _transfer(report: Report) -> list[str]:
    t = report.transfer
    if not t:
        return []
    n = t.test_samples
    return _section("Transfer", [
        "| figure | value |", "|---|---|",
        f"| test accuracy (transfer) | {_with_interval(t.test_accuracy, _iv(t.test_accuracy, n))} |",  # noqa: E501
        f"| test accuracy (scratch) | {_with_interval(t.scratch_test_accuracy, _iv(t.scratch_test_accuracy, n))} |",  # noqa: E501
        f"| transfer gain | {_gain(t)} |",
        f"| source accuracy before | {_pct(t.source_accuracy_before)} |",
        f"| source accuracy after | {_pct(t.source_accuracy_after)} |",
        f"| forgetting (before − after) | {_pts(t.forgetting)} |"],
        f"accuracies on the test split{_of(n)} with their 95% Wilson interval; the transfer "
        "gain is paired (the same test images, both models): its 95% interval and exact "
        "McNemar p. An interval that spans 0 is no evidence either way.")


def _incremental(report: Report) -> list[str]:
    """The report's section: old / new / all classes of the last step with intervals, the
    old classes before and after (paired), forgetting per class, the baselines, and the
    curve of all-class accuracy over the steps."""
    history = report.incremental
    if not history:
        return []
    last = history.last
    n, old_n = last.test_samples, last.old_samples or 0
    new_n = n - old_n

    def cell(value: float | None, count: int) -> str:
        if value is None or not count:
            return MISSING
        return stats.wilson(round(value * count), count).points()

    lines = ["| classes | test images | accuracy % [95% CI] |", "|---|---|---|",
             f"| Old classes ({', '.join(_old_names(history))}) | {old_n} | "
             f"{cell(last.old_accuracy, old_n)} |",
             f"| Old classes before this step | {old_n} | {cell(last.old_before, old_n)} |",
             f"| New classes ({', '.join(last.classes)}) | {new_n} | "
             f"{cell(last.new_accuracy, new_n)} |",
             f"| All classes | {n} | {cell(last.all_accuracy, n)} |"]
    for name, base in last.baselines.items():
        lines.append(f"| All classes, baseline {name} | {n} | {cell(base.all_accuracy, n)}"
                     + (f"; method − baseline {base.method_vs.describe()}"
                        if base.method_vs else "") + " |")
    lines += ["", f"Old classes after − before (same images): "
              f"{last.old_change.describe() if last.old_change else MISSING}; forgetting per "
              "class (before − after, points): "
              + ", ".join(f"{k} {v * 100:+.1f}" for k, v in last.forgetting.items()), "",
              "| step | classes added | classes | memory/class | all classes % |",
              "|---|---|---|---|---|"]
    lines += [f"| {s.step} | {', '.join(s.classes)} | {s.total_classes} | "
              f"{s.memory_per_class} | {s.all_accuracy * 100:.1f} |" for s in history.steps]
    return _section("Classes added step by step", lines,
                    "every step is measured on the test images of the classes seen so far; "
                    "the old classes' change is paired (95% Newcombe interval, exact McNemar "
                    "p); `edge-transfer check` fails when it drops beyond "
                    "--max-old-class-drop and significantly.")


def _old_names(history: IncrementalHistory) -> list[str]:
    return [name for s in history.steps[:-1] for name in s.classes]


def _artifacts(report: Report) -> list[str]:
    return _section(
        "Artifacts", [_table(report.artifacts)],
        "accuracies in % with their 95% Wilson interval (workstation: the test split; "
        "device: the bundle's sample, the same test images). Δ vs float and device gap are "
        "paired differences on the same images, in points, with a 95% Newcombe interval and "
        "the exact McNemar p-value; a difference whose interval spans 0 (p ≥ 0.05) may be "
        "noise.")


def _steps(report: Report) -> list[str]:
    trained = [r for r in report.artifacts if r.steps is not None and r.status == "ok"]
    if not trained:
        return []
    return _section(
        "QAT and pruned files, step by step",
        [f"- **{r.name}**: {which_step(r.steps)}" for r in trained if r.steps],
        "such a file is judged against the float model; in between, the fine-tune (its "
        "trained Keras model against the float model) and the conversion (the file against "
        "that trained model) are each paired on the same test images.")


def _failed(report: Report) -> list[str]:
    failed = [r for r in report.artifacts if r.status != "ok"]
    return _section("Failed artifacts", [
        f"- **{r.name}**: {r.reason or 'no reason recorded'}" for r in failed]) if failed else []


def _figures(report: Report) -> list[str]:
    files = report.files or ReportFiles(plot=None)
    lines = []
    if files.plot:
        lines += _section(
            "Accuracy against size", [f"![accuracy against size]({files.plot})"],
            "each point is one file; the bars are 95% intervals of its accuracy. Points whose "
            "bars overlap heavily cannot be told apart on this many samples.")
    if files.confusion:
        lines += _section("Confusion matrices, float against int8",
                          [f"![confusion matrices]({files.confusion})"])
    return lines


def client_table(rows: Sequence[ReportRow]) -> list[str]:
    """The files in the deploy clients (``validate --client``): a file x client table of
    top-1 agreement with our runtime, then why a client did not run a file.

    >>> from edge_transfer.core.records.validation import ClientRow
    >>> row = ReportRow(name="onnx-fp32", status="ok", clients=(
    ...     ClientRow("onnx-fp32", "openvino", "refused", "no model_type"),))
    >>> print("\\n".join(client_table([row])[2:5]))
    | file | openvino |
    |---|---|
    | onnx-fp32 | refused |
    """
    runs = [c for r in rows for c in r.clients]
    if not runs:
        return []
    clients = list(dict.fromkeys(c.client for c in runs))
    table = [f"| file | {' | '.join(clients)} |", "|---" * (len(clients) + 1) + "|"]
    for r in rows:
        if r.clients:
            cells = {c.client: c.cell() for c in r.clients}
            table.append(f"| {r.name} | {' | '.join(cells.get(c, '—') for c in clients)} |")
    lines = _section(
        "Deploy clients", table,
        "each file run by the client's own API on the device's images (pixels in, the "
        "client's own preprocessing and labels from the file): the share of images whose "
        "top-1 label equals our runtime's, with its 95% Wilson interval, and the exact "
        "McNemar p of the paired accuracy difference. — : the client does not read that "
        "format.")
    reasons = [f"- **{c.artifact}** in {c.client}: {c.status}: {c.reason}" for c in runs
               if c.reason]
    return [*lines, *reasons, ""] if reasons else lines


def _class_table(report: Report) -> list[str]:
    """What quantization changed, class by class: per quantized file, the test images of
    each class it got right that the float model got wrong (gained) and the reverse (lost)."""
    if report.samples is None or report.float_predictions is None:
        return []
    title = "What quantization changed, per class"
    changed = _changed_classes(report)
    if not changed:
        return _section(title, ["No quantized file changed whether any test image was "
                                "classified correctly."])
    first = changed[0][1]
    table = ["| class | images | float correct | " + " | ".join(n for n, _ in changed) + " |",
             "|---|---|---|" + "---|" * len(changed)]
    for i, c in enumerate(first):
        cells = [_change(per_class[i]) for _, per_class in changed]
        table.append(f"| {c.label} | {c.samples} | {c.before} | " + " | ".join(cells) + " |")
    total = [sum(c.change for c in per_class) for _, per_class in changed]
    table.append("| all | " + f"{sum(c.samples for c in first)} | "
                 f"{sum(c.before for c in first)} | "
                 + " | ".join(f"**{t:+d}**" for t in total) + " |")
    return _section(
        title, table,
        "each cell is the change in correctly classified test images of that class against "
        "the float model (net, then lost/gained images); 0 means the file agrees with the "
        "float model on every image of the class. Files that changed nothing are left out.")


def _changed_classes(report: Report) -> list[tuple[str, list[comparisons.ClassChange]]]:
    """(name, per-class changes) of each quantized file that changed any test image."""
    changed = []
    for row in report.artifacts:
        if row.status != "ok" or (row.precision == "fp32" and not row.qat and not row.sparsity):
            continue
        per_class = comparisons.class_changes(report.samples, report.float_predictions,
                                              row.predictions, report.labels)
        if per_class and any(c.lost or c.gained for c in per_class):
            changed.append((row.name, per_class))
    return changed


def _change(c: comparisons.ClassChange) -> str:
    return f"{c.change:+d} (−{c.lost}/+{c.gained})" if c.lost or c.gained else "0"


TABLE_COLUMNS = ("artifact", "format", "precision", "status", "size", "× fp32",
                 "acc. workstation", "acc. device", "Δ vs float", "p50 ms", "FPS",
                 "peak MB", "device gap", "budgets", "top-1 agree", "max diff")


def table_cells(row: ReportRow) -> list[str]:
    """One artifact row as display strings (shared by Markdown and the terminal table)."""
    return [
        row.name, row.format or MISSING, row.precision or MISSING,
        row.status, _size(row.bytes), _fmt(row.ratio_to_fp32, "{:.2f}×"),
        _with_interval(row.workstation_accuracy, row.workstation_interval),
        _with_interval(row.device_accuracy, row.device_interval),
        _paired(row.delta_vs_float, row.vs_float), _fmt(row.latency_p50_ms, "{:.3f}"),
        _fmt(row.fps, "{:.0f}"), _fmt(row.peak_memory_mb, "{:.1f}"),
        _paired(row.device_gap, row.device_vs_workstation),
        ", ".join(f"{k} {v}" for k, v in row.checks.items()) or MISSING,
        _fmt(row.agreement_top1, "{:.4f}"), _fmt(row.max_abs_diff, "{:.2g}"),
    ]


def _with_interval(value: float | None, interval: Sequence[float] | None) -> str:
    """``'97.0% [92.6, 98.8]'`` (percent, interval in percent), or the bare percentage."""
    if value is None or not interval:
        return _pct(value)
    return f"{value:.1%} [{interval[0] * 100:.1f}, {interval[1] * 100:.1f}]"


def _paired(value: float | None, cmp: Comparison | None) -> str:
    """``'-0.7 pt [-4.2, +2.3] p=1'``, or the bare points without a paired comparison."""
    if value is None or cmp is None:
        return _pts(value)
    return _pts_paired(value, cmp.low, cmp.high, cmp.p_value)


def _pts_paired(value: float, low: float, high: float, p: float) -> str:
    return (f"{value * 100:+.1f} pt [{low * 100:+.1f}, {high * 100:+.1f}] "
            f"p={stats.format_p(p)}")


def _iv(accuracy: float | None, n: float | None) -> tuple[float, float] | None:
    interval = comparisons.interval_of(accuracy, int(n) if n else None)
    return None if interval is None else (interval.low, interval.high)


def _gain(t: TransferFigures) -> str:
    if (t.transfer_gain is None or t.transfer_gain_p is None or t.transfer_gain_low is None
            or t.transfer_gain_high is None):
        return _pts(t.transfer_gain)
    return _pts_paired(t.transfer_gain, t.transfer_gain_low, t.transfer_gain_high,
                       t.transfer_gain_p)


def _of(n: Any) -> str:
    return f" ({int(n):,} images)" if n else ""


def _table(rows: Iterable[ReportRow]) -> str:
    out = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    out += ["| " + " | ".join(table_cells(r)) + " |" for r in rows]
    return "\n".join(out)


def _fmt(value: float | None, pattern: str) -> str:
    return MISSING if value is None else pattern.format(value)


def _pct(value: float | None) -> str:
    return _fmt(value, "{:.1%}")


def _pts(value: float | None) -> str:
    return _fmt(None if value is None else value * 100, "{:+.1f} pt")


def _size(value: int | None) -> str:
    if value is None:
        return MISSING
    return f"{value / 1024:.1f} KiB" if value < 1024 * 1024 else f"{value / 2**20:.2f} MiB"

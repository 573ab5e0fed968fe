"""``edge-transfer validate BUNDLE``: run every model of a bundle on a device, check budgets.

Exit code 0 when every artifact ran, no check failed and no deploy client (``--client``)
refused a file or disagreed with our runtime beyond the bundle's tolerance (significantly);
1 when one did; 2 for bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from edge_transfer.commands._options import add_device_options, add_json, write_json_output

HELP = "validate a bundle on a device (local or ssh://) against a profile"
DESCRIPTION = ("Check every sha256 of a bundle, run each model on the device with its "
               "validation sample (or --data), and compare size, peak memory, latency and "
               "accuracy with the device profile's budgets and the workstation's accuracy.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder or .tar.gz (`edge-transfer bundle`)")
    add_device_options(parser, what="validate")
    add_json(parser, "the validation result")
    parser.add_argument("--artifact", action="append", default=[], metavar="NAME",
                        help="validate only this artifact (repeatable)")
    parser.add_argument("--outputs", default=None, metavar="DIR",
                        help="save each artifact's raw outputs on the sample as DIR/NAME.npy "
                             "(to compare devices; local and self)")
    parser.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="also run every file in this deploy client, on the device, and "
                             "compare its top-1 with our runtime's: mediapipe (MediaPipe "
                             "Tasks ImageClassifier), litert (a bare interpreter), onnxruntime "
                             "(a bare session), openvino (OpenVINO Model API), or all; "
                             "repeatable or comma-separated. A client that refuses a file, "
                             "or is significantly less accurate than our runtime beyond the "
                             "bundle's tolerance, fails the validation; one not installed is "
                             "a row saying so")
    parser.add_argument("--client-python", default=None, metavar="PYTHON",
                        help="the Python the clients are installed in (default: "
                             "$EDGE_TRANSFER_CLIENTS_PYTHON, else a checkout's "
                             ".venv-clients, else this one); local devices")
    ssh = parser.add_argument_group("ssh devices")
    ssh.add_argument("--remote-command", default="edge-transfer",
                     help="how to start edge-transfer on the device (default: edge-transfer)")
    ssh.add_argument("--ssh-option", action="append", default=[], metavar="OPTION",
                     help="extra ssh -o option, e.g. Port=2222 (repeatable)")
    ssh.add_argument("--identity", default=None, help="ssh identity (private key) file")
    ssh.add_argument("--connect-timeout", type=int, default=10, help="seconds (default 10)")


def run(args: argparse.Namespace) -> int:
    import sys

    from devices import validate_bundle
    from edge_transfer.train.runs import output_file

    if args.json and args.json != "-":
        output_file(args.json, "--json")  # before minutes of validation, not after
    result = validate_bundle(
        args.bundle, device=args.device, profile=args.profile, threads=args.threads,
        data=args.data, artifacts=args.artifact, remote_command=args.remote_command,
        ssh_options=args.ssh_option, identity=args.identity,
        connect_timeout=args.connect_timeout, outputs=args.outputs,
        clients=args.client, clients_python=args.client_python,
    )
    result = _recommended(result, args)
    if args.json:
        write_json_output(args.json, result)
    print_table(result, stderr=args.json == "-")
    print_recommendation(result, stderr=args.json == "-")
    from edge_transfer.commands._warn import warn

    if result.get("clients"):
        from devices.clients.table import missing_lines, print_clients

        print_clients(result, stderr=args.json == "-")
        for line in missing_lines(result):
            warn(line)
    for line in health_lines(result):
        warn(line)
    failed = failures(result)
    if failed:
        print(f"validation failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _recommended(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The result with the file to deploy on its device (``devices.deploy``)."""
    from devices.deploy import with_recommendation
    from devices.profile import resolve_profile

    if args.device == "self":
        return result
    return with_recommendation(result, args.bundle, resolve_profile(args.profile))


def print_recommendation(result: dict[str, Any], stderr: bool = False) -> None:
    """Which file to deploy on this device, why, how latency was measured, and the trades."""
    import sys

    from edge_transfer.core.latency import describe_latency

    rec = result.get("recommendation")
    if not rec:
        return
    out = sys.stderr if stderr else sys.stdout
    where = rec["device"] + (f" (profile {rec['profile']})" if rec.get("profile") else "")
    print(f"deploy on {where}: {rec['reason']}", file=out)
    print(f"  ranking by {rec['basis']}", file=out)
    timed = next((r.get("latency") for r in result["artifacts"] if r.get("latency")), None)
    if timed:
        print(f"  latency: one image at a time, {timed['warmup']} warm-up then "
              f"{timed['runs']} timed runs, median and IQR, "
              f"{timed.get('threads') or '?'} threads "
              f"(e.g. {describe_latency(timed).split(' of ')[0]})", file=out)
    for line in rec.get("trades") or ():
        print(f"  {line}", file=out)
    for name, why in (rec.get("excluded") or {}).items():
        print(f"  not {name}: {why}", file=out)


def failures(result: dict[str, Any]) -> list[str]:
    """``name`` of failed artifacts and ``name:check`` of failed checks."""
    out = []
    for row in result["artifacts"]:
        if row["status"] == "failed":
            out.append(row["name"])
        out += [f"{row['name']}:{c['name']}" for c in row["checks"] if c["status"] == "fail"]
    out += [f"{row['artifact']} in {row['client']}" for row in result.get("clients") or ()
            if row["status"] in ("refused", "disagrees")]
    return out


def health_lines(result: dict[str, Any]) -> list[str]:
    """One line per artifact that ran at chance, or predicted one class for >= 90% of the
    samples, on the device."""
    from edge_transfer.core.records.paired import SampleIds
    from edge_transfer.report.comparisons import health

    try:
        samples = SampleIds.from_dict(result["samples"]) if result.get("samples") else None
    except ValueError:
        samples = None
    labels = [str(i) for i in range(len(result["artifacts"][0].get("per_class_accuracy") or []))
              ] if result["artifacts"] else []
    out = []
    for row in result["artifacts"]:
        if row["status"] == "ok" and samples is not None and row.get("samples") == samples.count:
            line = health(samples, row.get("predictions"), labels, f"{row['name']} on the device")
            if line:
                out.append(line)
    return out


def _accuracy(row: dict[str, Any]) -> str:
    """``'0.9478 [0.896, 0.974]'``: the accuracy with its 95% Wilson interval."""
    from edge_transfer.core.stats import wilson

    n = int(row.get("samples") or 0)
    if not n:
        return f"{row['accuracy']:.4f}"
    iv = wilson(round(row["accuracy"] * n), n)
    return f"{row['accuracy']:.4f} [{iv.low:.3f}, {iv.high:.3f}]"


def print_table(result: dict[str, Any], stderr: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    device = result["device"]
    title = (f"{result['bundle']} on {device['name']} ({device['arch']}, profile "
             f"{device['profile']}{', emulated' if device['emulated'] else ''})")
    table = Table(title=title)
    compared = any(row.get("agreement") for row in result["artifacts"])
    columns = ["Artifact", "Status", "Size KB", "Accuracy [95%]", "Workstation", "p50 (IQR) ms",
               "p90 ms",
               "FPS", "Peak MB", "storage", "memory", "latency", "accuracy", "Reason"]
    if compared:  # another device's outputs against the workstation's, on the same sample
        columns[5:5] = ["Top-1 agree", "Max diff"]
    for column in columns:
        table.add_column(column)
    marks = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "skip": "[dim]skip[/]"}
    for row in result["artifacts"]:
        checks = {c["name"]: marks[c["status"]] for c in row["checks"]}
        ok = row["status"] == "ok"
        agreement = row.get("agreement") or {}
        extra = [_fmt(agreement.get("top1"), ".4f"), _fmt(agreement.get("max_abs_diff"), ".2g")]
        table.add_row(
            row["name"], row["status"], f"{row['bytes'] / 1024:.1f}",
            _accuracy(row) if ok else "-",
            _fmt(row.get("workstation_accuracy"), ".4f"),
            *(extra if compared else []),
            _p50(row) if ok else "-",
            f"{row['latency_ms']['p90']:.3f}" if ok else "-",
            f"{row['throughput_fps']:.0f}" if ok else "-",
            f"{row['peak_memory_mb']:.0f}" if ok else "-",
            *[checks.get(n, "-") for n in ("storage", "memory", "latency", "accuracy")],
            row["reason"] or "",
        )
    Console(width=200, stderr=stderr).print(table)


def _p50(row: dict[str, Any]) -> str:
    """``'0.720 (0.050)'``: the median and, when measured, its interquartile range."""
    latency = row.get("latency") or {}
    iqr = latency.get("iqr")
    return f"{row['latency_ms']['p50']:.3f}" + (f" ({iqr:.3f})" if iqr is not None else "")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)

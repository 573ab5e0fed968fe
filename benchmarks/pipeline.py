"""Seconds of each step of a pipeline (default: the shipped demo), and its report table, to JSON.

    python benchmarks/pipeline.py [--config PIPELINE.toml] [--out DIR] [--json OUT]

Writes benchmarks/results/pipeline.json: {"config", "out", "steps": [{"name", "seconds",
"exit_code"}], "total_seconds", "report": [accuracy-vs-size rows of report.json] | null}.
"""

from __future__ import annotations

import argparse
import tempfile
from importlib.resources import files
from pathlib import Path

from _results import RESULTS, machine, repo_path, write_result

from edge_transfer.commands._pipeline import load_pipeline, run_pipeline
from edge_transfer.core.records import Report

COLUMNS = ("name", "status", "bytes", "ratio_to_fp32", "workstation_accuracy",
           "device_accuracy", "delta_vs_float", "latency_p50_ms", "fps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path,
                    default=Path(str(files("edge_transfer").joinpath("configs/demo.toml"))))
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=RESULTS / "pipeline.json")
    args = ap.parse_args()
    machine_at_start = machine()
    with tempfile.TemporaryDirectory(prefix="edge-transfer-bench-") as tmp:
        pipeline = load_pipeline(args.config, out=args.out or Path(tmp) / "work")
        results = run_pipeline(pipeline)
        report_step = pipeline.step("report")
        report_path = (Path(pipeline.expand(str(report_step.get("out")), is_path=True))
                       / "report.json") if report_step and report_step.get("out") else None
        report = (Report.load(report_path)
                  if report_path and report_path.is_file() else None)
    rows = ([{k: v for k, v in r.to_dict().items() if k in COLUMNS} for r in report.artifacts]
            if report else None)
    out = {"config": repo_path(args.config), "machine": machine_at_start,
           "steps": [{"name": r.name, "seconds": round(r.seconds, 2), "exit_code": r.exit_code}
                     for r in results],
           "total_seconds": round(sum(r.seconds for r in results), 2),
           "transfer": report.transfer.to_dict() if report and report.transfer else None,
           "report": rows}
    write_result(args.json, out)
    for step in out["steps"]:
        print(f"{step['name']:>10}: {step['seconds']:7.1f} s (exit {step['exit_code']})")
    print(f"{'total':>10}: {out['total_seconds']:7.1f} s -> {args.json}")


if __name__ == "__main__":
    main()

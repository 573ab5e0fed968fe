"""Backbone support matrix: every keras.applications family through the whole chain.

For each backbone (the smallest of every family first, then the others with ``--all``): train
from random weights on digits 0-4 at the smallest input it accepts, export fp32 + int8 to
TFLite and ONNX and QAT int8, check each file in its runtime. Each backbone runs in its own
process (a crash or a timeout costs only that row); the JSON is rewritten after every
backbone, so an interrupted sweep keeps what finished and lists what did not. It then
rewrites the README's backbone table from the JSON.

    nice -n 5 python benchmarks/backbones.py [--all] [--only NAME ...] [--epochs 4]
        [--no-qat] [--jobs 2] [--timeout 2400] [--out edge_transfer/report/backbones.json]

``--from-file`` measures the matrix's "from a .keras file" column instead: each backbone's
keras.applications model saved as a ``.keras`` file (random weights, the smallest input,
every argument at its default), pretrained from that file as a user would; the cell is its
test accuracy, or the warning that says why it is low (``support.probe_file``). The JSON and
the README are rewritten after each backbone; backbones that already have a cell are skipped
unless ``--redo``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import ROOT, machine, write_result

sys.path.insert(0, str(ROOT))
README_START = "<!-- backbone-matrix:start (benchmarks/backbones.py writes this table) -->"
README_END = "<!-- backbone-matrix:end -->"


# Families whose known trouble the matrix must show first (grouped convolutions, int8 loss,
# QAT refusals), then the rest in registry order.
FIRST = ("regnetx_002", "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v1", "mobilenet_v2")


def planned(all_models: bool, only: list[str] | None) -> list[str]:
    """The smallest model of each family (the first the registry lists), then the rest."""
    from edge_transfer.train import backbones

    if only:
        return [backbones.get(name).name for name in only]
    groups = list(backbones.families(applications=True).values())
    names = [group[0] for group in groups]
    names = [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]
    if all_models:
        names += [name for group in groups for name in group[1:]]
    return names


def run_one(name: str, epochs: int, qat: bool, out: Path) -> None:
    from edge_transfer.report.support import probe

    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as work:
        row = probe(name, Path(work), epochs=epochs, qat=qat)
    write_result(out, row)  # atomic: --import-row may read it after the sweep died


def run_one_file(name: str, epochs: int, out: Path) -> None:
    from edge_transfer.report.support import probe_file

    with tempfile.TemporaryDirectory(prefix=f"bench-file-{name}-") as work:
        cell = probe_file(name, Path(work), epochs=epochs)
    write_result(out, cell)


def measure_file(name: str, args: argparse.Namespace) -> dict:
    """The "from a .keras file" cell of one backbone, in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        cell_file = Path(tmp) / "cell.json"
        command = [sys.executable, __file__, "--one-file", name, "--epochs", str(args.epochs),
                   "--row", str(cell_file)]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {args.timeout} s",
                    "seconds": args.timeout}
        if done.returncode != 0 or not cell_file.is_file():
            tail = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["?"]
            return {"status": "failed", "reason": f"process exited {done.returncode}: "
                                                  f"{tail[0][:200]}",
                    "seconds": round(time.perf_counter() - start, 1)}
        return {**json.loads(cell_file.read_text()), "machine": machine(),
                "epochs": args.epochs}


def add_file_cell(path: Path, name: str, cell: dict) -> dict:
    """Put ``cell`` into the row of ``name`` (a new row when there is none), under the lock."""
    import fcntl

    from edge_transfer.report.support import base_row

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.is_file() else {"models": []}
        rows = data.setdefault("models", [])
        row = next((r for r in rows if r["name"] == name), None)
        if row is None:
            row = {**base_row(name, cell.get("epochs", 4), False), "train": {}, "variants": {}}
            rows.append(row)
        row["from_file"] = cell
        write_result(path, data)
    return data


def measured_files(path: Path) -> set[str]:
    """The backbones whose "from a .keras file" cell ``path`` already holds (a finished
    measurement, not a failure), which ``--from-file`` skips unless ``--redo``."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    return {row["name"] for row in data.get("models", [])
            if (row.get("from_file") or {}).get("status") == "ok"}


def measure(name: str, args: argparse.Namespace) -> dict:
    """One backbone in a child process; a crash or timeout becomes a failed row (with the
    registry's family and input size, and paths relative to the run)."""
    from edge_transfer.report.support import base_row, relative_paths

    base = base_row(name, args.epochs, not args.no_qat)
    with tempfile.TemporaryDirectory() as tmp:
        row_file = Path(tmp) / "row.json"
        command = [sys.executable, __file__, "--one", name, "--epochs", str(args.epochs),
                   "--row", str(row_file)] + (["--no-qat"] if args.no_qat else [])
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        except subprocess.TimeoutExpired:
            return {**base, "train": {"status": "failed",
                                      "reason": f"timed out after {args.timeout} s"},
                    "variants": {}, "seconds": args.timeout}
        if done.returncode != 0 or not row_file.is_file():
            tail = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["?"]
            return {**base, "train": {"status": "failed",
                                      "reason": f"process exited {done.returncode}: "
                                                f"{relative_paths(tail[0])[:200]}"},
                    "variants": {}, "seconds": round(time.perf_counter() - start, 1)}
        row = json.loads(row_file.read_text())
        row["seconds"] = round(time.perf_counter() - start, 1)
        return row


def write(path: Path, done: dict[str, dict], pending: list[str], started: float,
          machine_at_start: dict) -> dict:
    """Merge this sweep's finished rows and pending names into ``path`` under a file lock
    (several sweeps may share the file), atomically; return the merged data."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.is_file() else {}
        rows = {row["name"]: row for row in old.get("models", [])} | done
        waiting = [n for n in dict.fromkeys([*old.get("not_finished", []), *pending])
                   if n not in done or n in pending]
        data = {
            "benchmark": "backbones", "schema_version": 1,
            "settings": {"data": "digits:0-4 (5 classes, chance 0.2)", "weights": "random",
                         "input": "smallest each backbone accepts",
                         "epochs": "per row (pretrain epochs; QAT fine-tune 1 epoch)",
                         "variants": "fp32 + int8, TFLite + ONNX; QAT int8 too where the row "
                                     "has QAT variants (rows with qat_measured false skip it)"},
            "machine": machine_at_start,  # the last sweep's; each row has its own
            "seconds": round(time.time() - started, 1),
            "models": list(rows.values()),
            "not_finished": waiting,
        }
        write_result(path, data)
    return data


def update_readme(matrix: dict) -> None:
    from edge_transfer.core.atomic import write_text_atomic
    from edge_transfer.report.support import markdown_table

    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    note = ""
    if matrix.get("not_finished"):
        note = f"\n\nNot measured yet: {', '.join(matrix['not_finished'])}."
    table = markdown_table(matrix)
    write_text_atomic(readme, f"{head}{README_START}\n{table}{note}\n{README_END}{tail}")


def main() -> int:
    from concurrent.futures import ThreadPoolExecutor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every model, not one per family")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="just these backbones")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME",
                        help="leave these out (e.g. measured by another sweep)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--no-qat", action="store_true")
    parser.add_argument("--jobs", type=int, default=1, help="backbones measured at once")
    parser.add_argument("--timeout", type=int, default=2400, help="seconds per backbone")
    parser.add_argument("--out", type=Path,   # package data: the installed matrix
                        default=ROOT / "edge_transfer" / "report" / "backbones.json")
    parser.add_argument("--import-row", type=Path, metavar="ROW",
                        help="merge one row written by an interrupted sweep's child")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite the README table from the JSON (left unchanged)")
    parser.add_argument("--from-file", action="store_true",
                        help="measure the 'from a .keras file' column only")
    parser.add_argument("--redo", action="store_true",
                        help="with --from-file: measure again the backbones that have a cell")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--one-file", help=argparse.SUPPRESS)
    parser.add_argument("--row", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.epochs, not args.no_qat, args.row)
        return 0
    if args.one_file:
        run_one_file(args.one_file, args.epochs, args.row)
        return 0
    if args.from_file:
        for name in [n for n in planned(args.all, args.only)
                     if n not in args.skip and (args.redo or n not in measured_files(args.out))]:
            print(f"{name} (from a .keras file) ...", flush=True)
            cell = measure_file(name, args)
            print(f"{name}: {json.dumps(cell)[:400]}", flush=True)
            update_readme(add_file_cell(args.out, name, cell))
        return 0
    if args.readme and not args.import_row:   # the JSON keeps its sweep's machine and seconds
        from edge_transfer.report.support import load_matrix

        update_readme(load_matrix(args.out))
        return 0
    started, machine_at_start = time.time(), machine()
    if args.import_row:
        row = json.loads(args.import_row.read_text())
        update_readme(write(args.out, {row["name"]: row}, [], started, machine_at_start))
        return 0
    names = [n for n in planned(args.all, args.only) if n not in args.skip]
    finished: dict[str, dict] = {}
    write(args.out, finished, names, started, machine_at_start)

    def one(name: str) -> None:
        print(f"{name} ...", flush=True)
        # each row its own provenance: rows of several sweeps share the file
        at_start = {**machine(), "backbones_at_once": args.jobs}
        row = {**measure(name, args), "machine": at_start}
        finished[name] = row
        print(f"{name}: {json.dumps(row)[:600]}", flush=True)
        write(args.out, {name: row}, [n for n in names if n not in finished], started,
              machine_at_start)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, names))
    update_readme(write(args.out, {}, [], started, machine_at_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())

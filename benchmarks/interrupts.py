"""Interruption stress run: ``edge-transfer export`` signalled at many moments of its work.

    python benchmarks/interrupts.py RUN [--delays 20] [--sigterm 4] [--out results.json]

First one complete export (its wall time T, and the good record every later export rewrites);
then ``--delays`` exports each sent SIGINT after ``T * (k + 0.5) / N`` seconds (k = 0..N-1:
spread over the whole export, from loading TensorFlow through the QAT fine-tune, every
converter and every check), then ``--sigterm`` more sent SIGTERM, then one per file of
``--after`` signalled (SIGINT and SIGTERM in turn) the moment the export has rewritten that
file: under a varying load the timed delays drift, these stay tied to the export's progress.
Each must end with exit
130 (SIGINT) or 143 (SIGTERM) and ``interrupted`` as its last line, with no variant recorded
as failed, nothing listed as good that is not (sha256 and size of every ok file), none of
its temporaries left (in the export folder or in its own TMPDIR). An export that finished
before its signal counts as ``finished`` (exit 0, all ok), not as a pass or a failure.
Ends with one complete export, which must succeed. Without RUN it trains the demo's run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import RESULTS, ROOT, machine, write_result

ARGS = ("--formats", "tflite,onnx", "--precision", "fp32,int8", "--qat")
# The files an export of ARGS writes, in order: signalled as each appears, the export is in
# the next step (check of that file, the QAT fine-tune, tf2onnx, ONNX Runtime quantization).
AFTER = ("model-fp32.tflite", "model-int8.tflite", "model-int8-qat.tflite",
         "model-fp32.onnx", "model-int8.onnx")


def _export(run: Path, out: Path, tmpdir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir)}
    return subprocess.Popen([sys.executable, "-m", "edge_transfer", "export", str(run), *ARGS,
                             "--out", str(out)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _record_problems(out: Path) -> list[str]:
    """What is wrong with out/export.json: an ok file whose bytes differ, a failed variant."""
    from edge_transfer.core.records import ExportRecord

    if not (out / ExportRecord.FILE_NAME).exists():
        return []
    problems = []
    for artifact in ExportRecord.load(out).artifacts:
        if not artifact.ok or artifact.file is None:
            problems.append(f"{artifact.name} recorded {artifact.status}: {artifact.reason}")
            continue
        data = (out / artifact.file).read_bytes()
        if (hashlib.sha256(data).hexdigest(), len(data)) != (artifact.sha256, artifact.bytes):
            problems.append(f"{artifact.name} listed ok but its file differs")
    return problems


def _leftovers(out: Path, tmpdir: Path, expected: frozenset[str]) -> list[str]:
    """Temporaries in ``out``, and what TMPDIR holds beyond what a whole export leaves there
    (onnxruntime writes a session-id file ``.ses`` on import, interrupted or not)."""
    ours = [p.name for p in out.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name]
    return ours + [f"$TMPDIR/{p.name}" for p in tmpdir.iterdir() if p.name not in expected]


def _rewritten(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


def attempt(run: Path, out: Path, delay: float, signum: int,
            expected: frozenset[str] = frozenset(), after: str | None = None) -> dict:
    """One export, signalled ``delay`` s after its start or, with ``after``, as soon as it
    has rewritten that file of ``out`` (a moment tied to its progress, not to the load)."""
    with tempfile.TemporaryDirectory(prefix="interrupts-tmp-") as name:
        tmpdir = Path(name)
        start, since = time.monotonic(), time.time()
        process = _export(run, out, tmpdir)
        while True:
            try:
                _, stderr = process.communicate(timeout=0.05)
                sent = False
                break
            except subprocess.TimeoutExpired:
                due = (_rewritten(out / after, since) if after
                       else time.monotonic() - start >= delay)
                if due:
                    signalled = time.monotonic() - start
                    process.send_signal(signum)
                    sent = True
                    _, stderr = process.communicate(timeout=600)
                    break
        seconds = time.monotonic() - start
        delay = signalled if sent else delay
        lines = stderr.strip().splitlines()
        rewritten = sorted(p.name for p in out.glob("model-*")
                           if p.stat().st_mtime > time.time() - seconds)
        row = {"signal": signal.Signals(signum).name, "after": after,
               "delay_s": round(delay, 2),
               "exit_code": process.returncode, "seconds": round(seconds, 2),
               "last_line": lines[-1] if lines else "", "files_rewritten": rewritten,
               "record_problems": _record_problems(out),
               "leftovers": _leftovers(out, tmpdir, expected),
               "failed_in_output": "variant(s) failed" in stderr}
        row["tmpdir"] = sorted(p.name for p in tmpdir.iterdir())
    exit_code = 128 + signum
    if not sent or process.returncode == 0:
        row["outcome"] = "finished" if process.returncode == 0 and not row["record_problems"] \
            else "bad"
    else:
        good = (process.returncode == exit_code and row["last_line"] == "interrupted"
                and not row["record_problems"] and not row["leftovers"]
                and not row["failed_in_output"])
        row["outcome"] = "interrupted" if good else "bad"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path)
    parser.add_argument("--delays", type=int, default=20)
    parser.add_argument("--sigterm", type=int, default=4)
    parser.add_argument("--after", default=",".join(AFTER), metavar="FILES",
                        help="also signal once the export rewrote each of these files")
    parser.add_argument("--out", type=Path, default=RESULTS / "interrupts.json")
    args = parser.parse_args(argv)
    # Started in the background by a script (`cmd &`), this process and so its children would
    # ignore SIGINT; a user's export at a terminal does not.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    machine_at_start = machine()
    with tempfile.TemporaryDirectory(prefix="interrupts-") as name:
        work = Path(name)
        run = args.run
        if run is None:
            sys.path.insert(0, str(ROOT))
            from benchmarks.export import digits_run

            run = digits_run(work / "run")
        out = work / "export"
        full = attempt(run, out, 3600, signal.SIGINT)   # never signalled: runs to the end
        assert full["outcome"] == "finished", full
        total, expected = full["seconds"], frozenset(full["tmpdir"])
        plan: list[tuple[float, int, str | None]] = [
            (total * (k + 0.5) / args.delays, signal.SIGINT, None) for k in range(args.delays)]
        plan += [(total * (k + 0.5) / args.sigterm, signal.SIGTERM, None)
                 for k in range(args.sigterm)]
        files = [name for name in args.after.split(",") if name]
        plan += [(3600.0, (signal.SIGINT, signal.SIGTERM)[k % 2], name)
                 for k, name in enumerate(files)]
        rows: list[dict] = []
        for delay, signum, after in plan:
            rows.append(attempt(run, out, delay, signum, expected, after))
            print(json.dumps(rows[-1]), flush=True)
            # as it goes: a long run can be read midway
            _write(args.out, total, rows, None, machine_at_start)
        final = attempt(run, out, 3600, signal.SIGINT, expected)
    result = _write(args.out, total, rows, final["outcome"], machine_at_start)
    print(json.dumps({k: result[k] for k in ("full_export_seconds", "outcomes",
                                             "rerun_after_interrupts")}))
    return 0 if result["outcomes"]["bad"] == 0 and final["outcome"] == "finished" else 1


def _write(path: Path, total: float, rows: list[dict], rerun: str | None,
           machine_at_start: dict) -> dict:
    counts = {o: sum(r["outcome"] == o for r in rows) for o in ("interrupted", "finished", "bad")}
    stops = [r["seconds"] - r["delay_s"] for r in rows if r["outcome"] == "interrupted"]
    result = {
        "benchmark": "interrupts", "export_args": list(ARGS),
        "full_export_seconds": total, "rerun_after_interrupts": rerun,
        "outcomes": counts,
        "median_seconds_to_exit_after_signal": statistics.median(stops) if stops else None,
        "machine": machine_at_start,
        "attempts": rows,
    }
    write_result(path, result)
    return result


if __name__ == "__main__":
    sys.exit(main())

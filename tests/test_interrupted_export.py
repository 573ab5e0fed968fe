"""A killed export (SIGKILL, SIGINT) leaves nothing that export.json or a bundle lists as good,
and `edge-transfer export` run again picks up cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, run_cli

from edge_transfer.core.errors import BundleError
from edge_transfer.deploy.bundle import create_bundle

pytestmark = pytest.mark.slow  # three exports through the CLI, two of them killed

ARGS = ("--formats", "tflite,onnx", "--precision", "fp32,int8")


def _at_a_terminal() -> None:
    """In the child: SIGINT as at a terminal, even when the tests were started in the
    background by a script (`cmd &` without job control starts them ignoring SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(run: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "edge_transfer", "export", str(run), *ARGS,
                             "--out", str(out)], env=env, text=True, preexec_fn=_at_a_terminal,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(condition, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"export ended before the kill: {process.communicate()}"
        assert time.monotonic() < deadline, "export never got that far"
        time.sleep(0.05)


def _listed_good_are_good(out: Path) -> list[str]:
    """Names of the ok artifacts of out/export.json; each must match its sha256 and size."""
    record = out / "export.json"
    if not record.exists():
        return []
    good = [a for a in json.loads(record.read_text())["artifacts"] if a["status"] == "ok"]
    for artifact in good:
        data = (out / artifact["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == artifact["sha256"], artifact["name"]
        assert len(data) == artifact["bytes"], artifact["name"]
    return [a["name"] for a in good]


def _assert_not_bundled(run: Path, out: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"export\.json is missing"):
        create_bundle(run, tmp_path / "bundle", export_dir=out)
    assert not (tmp_path / "bundle").exists()


def _complete(run: Path, out: Path, *args: str) -> list[str]:
    result = run_cli("export", str(run), *args, "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert not hidden, f"temporaries left: {hidden}"
    return _listed_good_are_good(out)


def test_killed_export_leaves_nothing_listed_and_reruns_cleanly(
    digits_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    # SIGKILL a fresh export once its first model file is in place.
    process = _start(digits_run, out)
    _wait_for(lambda: (out / "model-fp32.tflite").exists(), process)
    process.kill()
    process.communicate()
    assert _listed_good_are_good(out) == []
    _assert_not_bundled(digits_run, out, tmp_path)

    # Run again: picks up cleanly.
    names = _complete(digits_run, out, *ARGS)
    assert sorted(names) == ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]
    first = (out / "model-fp32.tflite").stat().st_mtime_ns

    # SIGINT (Ctrl-C) an export that is rewriting a good one.
    process = _start(digits_run, out)
    _wait_for(lambda: (out / "model-fp32.tflite").stat().st_mtime_ns != first, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "interrupted"
    assert _listed_good_are_good(out) == []
    _assert_not_bundled(digits_run, out, tmp_path)

    # Run again with fewer variants: the files of the killed export's predecessor go too.
    assert _complete(digits_run, out, "--formats", "tflite", "--precision", "fp32") == [
        "tflite-fp32"]
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model-fp32.tflite"]


@pytest.mark.slow
def test_sigterm_in_the_qat_fine_tune_stops_with_143(digits_run: Path, tmp_path: Path) -> None:
    """SIGTERM (a scheduler's or `kill`'s stop) once the QAT fine-tune and its conversions
    run: exit 143, `interrupted`, no variant recorded as failed, no temporaries of ours."""
    out, tmp = tmp_path / "export", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp)}
    process = subprocess.Popen([sys.executable, "-m", "edge_transfer", "export", str(digits_run),
                                "--formats", "tflite", "--precision", "int8", "--qat",
                                "--out", str(out)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: (out / "model-int8.tflite").exists(), process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "interrupted"
    assert "variant(s) failed" not in stderr
    assert not (out / "export.json").exists()
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    assert [p.name for p in tmp.iterdir() if p.name != ".ses"] == []  # .ses: onnxruntime's


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker`` (a parent and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_export_and_its_workers(digits_run: Path, tmp_path: Path) -> None:
    """SIGINT while worker processes convert (`--jobs 2`): exit 130, `interrupted`, no worker
    left running, no record, no temporaries of ours, in the export folder or elsewhere."""
    out, tmp = tmp_path / "export", tmp_path / "tmp"
    tmp.mkdir()
    marker = f"EDGE_TRANSFER_TEST_MARK={os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp),
           marker.split("=")[0]: marker.split("=")[1]}
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_transfer", "export", str(digits_run), "--formats",
         "tflite,onnx", "--precision", "fp32,fp16,dynamic,int8,int16x8", "--jobs", "2",
         "--out", str(out)], env=env, text=True, preexec_fn=_at_a_terminal,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: any(out.glob("model-*")), process, timeout=600)
        assert len(_processes_with(marker)) >= 3, "no worker processes running"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:   # the test failed: stop the export and its workers
            process.terminate()
            process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "interrupted"
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []
    assert not (out / "export.json").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in tmp.iterdir() if p.name != ".ses"] == []  # .ses: onnxruntime's

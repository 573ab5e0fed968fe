"""Scripts that export with worker processes: one that raises afterwards exits at once (issue
13: a benchmark that crashed after exporting stayed alive at interpreter exit), and one
without a ``__main__`` guard, whose workers die importing it again, still exports every
variant, in its own process, with a warning naming the fix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _small_runs import digits_splits, save_run
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow   # two scripts, each spawning 2 workers that import TensorFlow

EXPORT = """
import sys
from pathlib import Path
from edge_transfer.export.pipeline import ExportConfig, export_run

def export():
    result = export_run(Path(sys.argv[1]), ExportConfig(precisions=("fp32", "int8"), jobs=2,
                                                        out=Path(sys.argv[2])))
    print("exported", " ".join(a.status for a in result.artifacts), flush=True)
"""
RAISES_AFTER = EXPORT + """
if __name__ == "__main__":
    export()
    raise RuntimeError("the script's own bug, after the export")
"""
NO_GUARD = EXPORT + "\nexport()\n"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras, dataset, _, pre = digits_splits(8)
    inputs = keras.Input(pre.input_shape)
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))
    return save_run(tmp_path_factory.mktemp("exit") / "run", model, dataset, pre)


def _script(tmp_path: Path, text: str, run: Path) -> subprocess.CompletedProcess[str]:
    """Run ``text`` as a script; one still alive after 300 s (a hang at exit) fails the test."""
    script = tmp_path / "script.py"
    script.write_text(text)
    return subprocess.run([sys.executable, str(script), str(run), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_a_script_that_raises_after_exporting_exits(small_run: Path, tmp_path: Path) -> None:
    done = _script(tmp_path, RAISES_AFTER, small_run)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "exported ok ok ok ok" in done.stdout
    assert "RuntimeError: the script's own bug, after the export" in done.stderr


def test_a_script_without_main_guard_exports_in_its_own_process(small_run: Path,
                                                                 tmp_path: Path) -> None:
    done = _script(tmp_path, NO_GUARD, small_run)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exported ok ok ok ok" in done.stdout
    assert "warning: the export's worker processes died while starting" in done.stderr
    assert 'under `if __name__ == "__main__":`' in done.stderr


KILLED_WHILE_CONVERTING = """
import os
import sys
import time
from pathlib import Path
from edge_transfer.export.pipeline import ExportConfig, export_run

def hang(task):
    os.write(1, b"converting\\n")   # one write: two workers' lines never interleave
    time.sleep(600)

if __name__ == "__main__":
    export_run(Path(sys.argv[1]), ExportConfig(precisions=("fp32", "int8"), jobs=2,
                                               out=Path(sys.argv[2])), worker=hang)
"""


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_workers_end_when_the_exporting_process_is_killed(small_run: Path,
                                                          tmp_path: Path) -> None:
    """SIGKILL (no clean-up possible) of a script whose workers are converting: the workers
    end by themselves within seconds instead of waiting for tasks forever."""
    script = tmp_path / "script.py"
    script.write_text(KILLED_WHILE_CONVERTING)
    process = subprocess.Popen([sys.executable, str(script), str(small_run),
                                str(tmp_path / "out")], stdout=subprocess.PIPE, text=True,
                               cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert process.stdout is not None and process.stdout.readline() == "converting\n"
        workers = [pid for pid in _children(process.pid) if _alive(pid)]
        assert len(workers) >= 2          # the pool's workers (and its resource tracker)
        process.kill()
        process.wait()
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [pid for pid in workers if _alive(pid)] == []
    finally:
        process.kill()
        for pid in _children(process.pid):
            os.kill(pid, signal.SIGKILL)

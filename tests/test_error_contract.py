"""The one error contract of the CLI: user error -> 2 and one line; internal error -> 1 and a
short hint, the traceback only under --debug; Ctrl-C -> 130, SIGTERM -> 143."""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli

from edge_transfer import cli
from edge_transfer.commands import devices
from edge_transfer.core import errors


def _raise(exc: BaseException):
    def handler(_args: argparse.Namespace) -> int:
        raise exc
    return handler


@pytest.fixture
def failing_devices(monkeypatch: pytest.MonkeyPatch):
    def use(exc: BaseException) -> None:
        monkeypatch.setattr(devices, "run", _raise(exc))
    return use


def test_internal_error_is_exit_1_with_a_hint_and_no_traceback(failing_devices, capsys) -> None:
    failing_devices(ZeroDivisionError("division by zero"))
    assert cli.main(["devices"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [
        "internal error: ZeroDivisionError: division by zero",
        "rerun with --debug for the traceback, and report it if it persists",
    ]


def test_debug_shows_the_traceback_of_an_internal_error(failing_devices) -> None:
    failing_devices(ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "devices"])


def test_user_error_is_exit_2_and_one_line_even_under_debug(failing_devices, capsys) -> None:
    failing_devices(errors.DataError("x.npz holds NaN; clean it"))
    for argv in (["devices"], ["--debug", "devices"]):
        assert cli.main(argv) == 2
        assert capsys.readouterr().err == "error: x.npz holds NaN; clean it\n"


def test_interrupt_is_exit_130(failing_devices, capsys) -> None:
    failing_devices(KeyboardInterrupt())
    assert cli.main(["devices"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_forced_internal_error_in_a_real_process(tmp_path) -> None:
    """A bug in a command (forced with a sitecustomize hook) in a real `edge-transfer` process."""
    hook = tmp_path / "sitecustomize.py"
    hook.write_text(
        "import edge_transfer.commands.devices as d\n"
        "def run(args):\n    return {}['missing']\n"
        "d.run = run\n")
    env = {"PYTHONPATH": f"{tmp_path}:{cli.__file__.rsplit('/edge_transfer/', 1)[0]}"}
    plain = run_cli("devices", env=env, timeout=60)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert "internal error: KeyError" in plain.stderr and "--debug" in plain.stderr
    debug = run_cli("--debug", "devices", env=env, timeout=60)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "KeyError" in debug.stderr


def test_error_types_form_one_tree() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if c.__module__ == errors.__name__]
    assert all(issubclass(c, errors.EdgeTransferError) for c in classes)
    users = [c for c in classes if issubclass(c, errors.UserError)]
    assert all(c.exit_code == 2 for c in users) and errors.EdgeTransferError.exit_code == 1


# A command whose library call is signalled: it sleeps (a stand-in for a native call's wait)
# and then does what libraries do with the KeyboardInterrupt they get: pass it on, turn it
# into an error of their own, or swallow it and return normally.
_SIGNALLED = (
    "import time, pathlib, edge_transfer.commands.devices as d\n"
    "def run(args):\n"
    "    pathlib.Path({ready!r}).touch()\n"
    "    try:\n"
    "        time.sleep(60)\n"
    "    except KeyboardInterrupt:\n"
    "        {then}\n"
    "    return 0\n"
    "d.run = run\n")


def _at_a_terminal() -> None:
    """In the child: SIGINT as at a terminal, even when the tests were started in the
    background by a script (`cmd &` without job control starts them ignoring SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("then", ["raise", "raise RuntimeError('conversion failed')", "pass"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_wins_over_what_the_library_made_of_it(tmp_path, then, signum) -> None:
    ready = tmp_path / "ready"
    (tmp_path / "sitecustomize.py").write_text(_SIGNALLED.format(ready=str(ready), then=then))
    env = {**os.environ,
           "PYTHONPATH": f"{tmp_path}:{cli.__file__.rsplit('/edge_transfer/', 1)[0]}"}
    process = subprocess.Popen([sys.executable, "-m", "edge_transfer", "devices"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_at_a_terminal)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (128 + signum, "interrupted\n")

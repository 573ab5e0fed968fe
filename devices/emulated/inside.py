"""Running inside the emulated arm64 userland: a command in a private mount namespace
chrooted into it (:func:`run_in_userland`), and ``edge-transfer validate`` there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from devices.emulated.host import check_host, ensure_binfmt, host_problems
from devices.emulated.userland import (
    SETUP_COMMAND,
    SYSTEM_PATH,
    VENV,
    Userland,
    copy_source,
    default_dir,
    project_source,
)
from edge_transfer.core.errors import DeviceError


def check_ready(userland: Userland | None = None) -> None:
    """Raise DeviceError (exit 2) unless ``userland`` can run validate now: set up, holding
    this edge-transfer, and a host that can enter it (root, qemu). Each problem names its fix.
    """
    userland = userland or Userland.at()
    problems = host_problems(for_setup=False)
    if not userland.ready():
        problems.append(f"no emulated arm64 userland in {userland.path}: "
                        f"{userland.setup_hint()}")
    else:
        stale = _stale_project(userland)
        if stale:
            problems.append(stale)
    if problems:
        raise DeviceError("emulated arm64 device: " + "; ".join(problems))


def _stale_project(userland: Userland) -> str | None:
    """Why the userland's edge-transfer is not this source tree's, or None when it is (or
    when this edge-transfer runs from an install, not a source tree)."""
    try:
        source = project_source()
    except DeviceError:
        return None
    installed = ((userland.info() or {}).get("project") or {}).get("fingerprint")
    with tempfile.TemporaryDirectory(prefix="edge-transfer-src-") as tmp:
        _, fingerprint = copy_source(source, Path(tmp) / "src")
    if installed == fingerprint:
        return None
    return (f"the userland in {userland.path} holds another edge-transfer than {source}: "
            f"run `{SETUP_COMMAND}"
            f"{'' if userland.path == default_dir() else ' --dir ' + str(userland.path)}` "
            "(it reuses the rootfs and wheels and reinstalls edge-transfer only)")


def run_in_userland(
    userland: Userland,
    argv: Sequence[str],
    *,
    binds: Mapping[str | os.PathLike[str], str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside the arm64 userland; output captured as text, never raises on a
    non-zero exit.

    ``binds`` maps host folders or files to absolute paths inside the userland (bind mounts,
    read-write, gone when the command ends). ``python`` on the PATH is the venv's. Not run as
    a doctest (it needs the userland and root):

    >>> run_in_userland(Userland.at(), ["python", "-m", "edge_transfer", "--version"],
    ...                 binds={"/data/bundle": "/mnt/bundle"})       # doctest: +SKIP
    """
    if not userland.ready():
        raise DeviceError(f"no emulated arm64 userland in {userland.path}: "
                          f"{userland.setup_hint()}")
    check_host(for_setup=False)
    ensure_binfmt(progress=lambda _: None)
    return chroot_run(userland.rootfs, argv, binds=binds or {}, env=env, timeout=timeout)


def chroot_run(
    rootfs: Path,
    argv: Sequence[str],
    *,
    binds: Mapping[str | os.PathLike[str], str],
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """chroot into ``rootfs`` in a private mount namespace with /proc and ``binds`` mounted."""
    if not argv:
        raise ValueError("argv is empty")
    lines = ['set -e', 'root="$1"; shift', 'mount -t proc proc "$root/proc"']
    created: list[Path] = []
    for host, inside in binds.items():
        source = Path(host).absolute()
        target = rootfs / _inside_path(inside)
        if not source.exists():
            raise DeviceError(f"{source} does not exist: nothing to bind at {inside}")
        created.extend(_make_mountpoint(target, directory=source.is_dir()))
        lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))}")
    lines.append('exec chroot "$root" "$@"')
    command = ["unshare", "--mount", "--propagation", "private", "--",
               "sh", "-c", "\n".join(lines), "sh", str(rootfs), *argv]
    child_env = {"PATH": f"{VENV}/bin:{SYSTEM_PATH}", "HOME": "/root", "LANG": "C.UTF-8",
                 "TMPDIR": "/tmp", "PYTHONUNBUFFERED": "1", **(env or {})}
    try:
        return _run_killable(command, list(argv), child_env, timeout)
    finally:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()


def _inside_path(inside: str) -> str:
    path = PurePosixPath(inside)
    if not path.is_absolute() or ".." in path.parts or path == PurePosixPath("/"):
        raise ValueError(f"bind target must be an absolute path inside the userland: {inside!r}")
    return str(path).lstrip("/")


def _make_mountpoint(target: Path, *, directory: bool) -> list[Path]:
    """Create ``target`` (a folder or an empty file) and its missing parents; return what was
    created, outermost first."""
    missing = [p for p in (*reversed(target.parents), target) if not p.exists()]
    for path in missing:
        if path == target and not directory:
            path.touch()
        else:
            path.mkdir()
    return missing


def _run_killable(command: list[str], argv: list[str], env: dict[str, str],
                  timeout: float | None) -> subprocess.CompletedProcess[str]:
    """subprocess.run that kills the whole process group on timeout, and on Ctrl-C/SIGTERM
    (the group is a session of its own: the terminal's signal does not reach it)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        raise DeviceError(f"`{shlex.join(argv)}` did not finish within {timeout:g} s in "
                          "the emulated arm64 userland (emulation is slow: raise the timeout, "
                          "or use fewer samples)") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def validate_in_userland(
    bundle_dir: str | os.PathLike[str],
    options: Sequence[str] = (),
    *,
    userland: Userland | None = None,
    binds: Mapping[str | os.PathLike[str], str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    timeout: float | None = 3600,
) -> dict:
    """``edge-transfer validate BUNDLE --device self --json OUT`` inside the userland; returns
    the validation JSON it wrote (whatever validate's exit code: failed checks still write it).

    The bundle is bound at ``/mnt/bundle``, ``out_dir`` (a temporary folder by default) at
    ``/mnt/out`` (so ``options`` may write more there, e.g. raw outputs), and ``binds`` where
    they say (e.g. a ``--data`` folder). Not run as a doctest (it needs the userland and root):

    >>> validate_in_userland("bundle/", ["--threads", "1"])["device"]["arch"]  # doctest: +SKIP
    'aarch64'
    """
    userland = userland or Userland.at()
    with contextlib.ExitStack() as stack:
        out = Path(out_dir) if out_dir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="edge-transfer-arm64-")))
        out.mkdir(parents=True, exist_ok=True)
        result = out / "validation.json"
        result.unlink(missing_ok=True)
        proc = run_in_userland(
            userland,
            ["python", "-m", "edge_transfer", "validate", "/mnt/bundle", "--device", "self",
             "--json", "/mnt/out/validation.json", *options],
            binds={**(binds or {}), bundle_dir: "/mnt/bundle", out: "/mnt/out"},
            timeout=timeout)
        if not result.exists():
            lines = proc.stderr.strip().splitlines() or ["no output"]
            tail = next((x for x in lines if x.startswith(("error", "internal error"))),
                        lines[-1])
            raise DeviceError(f"validate failed in the emulated arm64 userland (exit "
                              f"{proc.returncode}): {tail}")
        return json.loads(result.read_text())

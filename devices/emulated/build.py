"""Building the emulated arm64 userland, once: debootstrap a Debian arm64 rootfs, download
the arm64 wheels on the host, install them offline inside, and this project's wheel.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from devices.emulated.host import (
    check_host,
    ensure_binfmt,
    host_debian_mirror,
    install_interpreter,
    pip_download,
    run_host_or_raise,
)
from devices.emulated.inside import chroot_run
from devices.emulated.userland import (
    INCLUDE,
    PINNED,
    PROJECT_WHEELS,
    PYTHON_VERSION,
    SETUP_COMMAND,
    SUITE,
    SYSTEM_PATH,
    VENV,
    WHEELHOUSE,
    Progress,
    Userland,
    copy_source,
    project_source,
)
from edge_transfer.core.atomic import write_text_atomic
from edge_transfer.core.errors import DeviceError


def setup_emulated_arm64(
    dir: str | os.PathLike[str] | None = None,
    progress: Progress = print,
    *,
    force: bool = False,
) -> Userland:
    """Build (or reuse) the arm64 userland in ``dir``; return it ready to run.

    Stages, each reused when its inputs did not change: the Debian rootfs (debootstrap), the
    wheelhouse (``pip download`` for aarch64 on the host), the venv (offline install), the
    project's wheel. ``force`` rebuilds everything.
    """
    userland = Userland.at(dir)
    check_host()
    ensure_binfmt(progress)
    userland.path.mkdir(parents=True, exist_ok=True)
    with _locked(userland.path / ".lock"):
        if force:
            _remove_all(userland, progress)
        timings = _build_rootfs(userland, progress)
        previous = userland.info() or {}
        with tempfile.TemporaryDirectory(prefix="edge-transfer-wheel-") as tmp:
            copy, fingerprint = copy_source(project_source(), Path(tmp) / "src")
            requirements = _requirements()
            if (previous.get("project", {}).get("fingerprint") == fingerprint
                    and previous.get("requirements") == requirements and userland.ready()):
                progress(f"reusing {userland.path} (edge-transfer "
                         f"{previous['project']['version']}, {len(previous['wheels'])} wheels)")
                return userland
            userland.marker.unlink(missing_ok=True)
            project = _build_project_wheel(copy, Path(tmp), progress)
            wheels = _download_wheels(userland, Path(tmp) / project["wheel"], requirements,
                                      progress, timings)
            _swap_dir(Path(tmp), userland.project_wheels, keep=project["wheel"])
        rebuild = previous.get("wheels") != wheels or not (
            userland.rootfs / userland.python.lstrip("/")).exists()
        _install(userland, project["wheel"], requirements, rebuild, progress, timings)
        versions = _probe_versions(userland)
        info = {"schema_version": 1, "suite": SUITE, "arch": "arm64",
                "include": list(INCLUDE), "mirror": host_debian_mirror(),
                "requirements": requirements, "wheels": wheels,
                "project": {**project, "fingerprint": fingerprint},
                "versions": versions, "seconds": {**previous.get("seconds", {}), **timings}}
        _write_json(userland.marker, info)
    progress(f"ready: {userland.path} ({versions['machine']}, python {versions['python']}, "
             f"ai-edge-litert {versions['ai-edge-litert']}, "
             f"onnxruntime {versions['onnxruntime']})")
    return userland


def _remove_all(userland: Userland, progress: Progress) -> None:
    """``--force``: the rootfs and the stamps that would reuse any stage, removed."""
    progress(f"--force: removing {userland.rootfs} and rebuilding everything")
    _remove_tree(userland.rootfs)
    for stale in (userland.marker, userland.path / "rootfs.json"):
        stale.unlink(missing_ok=True)


_DEBOOTSTRAP_PHASE = re.compile(
    r"I: (Retrieving (Release|Packages)|Checking component|Resolving dependencies of |"
    r"Installing core|Unpacking required|Configuring required|Unpacking the base|"
    r"Configuring the base|Base system)")


def _build_rootfs(userland: Userland, progress: Progress) -> dict[str, float]:
    """debootstrap into rootfs.partial, then rename; reused when rootfs.json matches."""
    stamp = userland.path / "rootfs.json"
    wanted = {"suite": SUITE, "arch": "arm64", "variant": "minbase", "include": list(INCLUDE)}
    try:
        if json.loads(stamp.read_text()).get("debootstrap") == wanted and userland.rootfs.is_dir():
            progress(f"reusing the Debian {SUITE} arm64 rootfs in {userland.rootfs}")
            return {}
    except (OSError, ValueError):
        pass
    partial = userland.path / "rootfs.partial"
    _remove_tree(partial)
    _remove_tree(userland.rootfs)
    mirror = host_debian_mirror()
    command = ["debootstrap", "--arch=arm64", "--variant=minbase",
               f"--include={','.join(INCLUDE)}", SUITE, str(partial)]
    if mirror:
        command.append(mirror)
    progress(f"debootstrap: Debian {SUITE} arm64 from {mirror or 'the default mirror'} "
             "(a few minutes under emulation)")
    start = time.monotonic()
    log = userland.path / "debootstrap.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "PATH": SYSTEM_PATH})
        assert proc.stdout is not None
        retrieved, extracting = 0, False
        for line in proc.stdout:
            sink.write(line)
            if _DEBOOTSTRAP_PHASE.match(line):
                progress(f"debootstrap: {line[3:].strip()}")
            elif line.startswith("I: Retrieving "):
                retrieved += 1
            elif line.startswith("I: Extracting ") and not extracting:
                extracting = True
                progress(f"debootstrap: retrieved {retrieved} packages, extracting")
        code = proc.wait()
    if code != 0:
        _unmount_under(partial)
        tail = log.read_text().strip().splitlines()[-3:]
        raise DeviceError(f"debootstrap failed (exit {code}): {' | '.join(tail)}; see {log} "
                          "(check the network and the Debian mirror, then rerun the setup)")
    _unmount_under(partial)
    install_interpreter(partial)
    partial.rename(userland.rootfs)
    seconds = round(time.monotonic() - start, 1)
    _write_json(stamp, {"debootstrap": wanted, "mirror": mirror, "seconds": seconds})
    progress(f"debootstrap: done in {seconds:.0f} s")
    return {"debootstrap": seconds}


def _build_project_wheel(copy: Path, out: Path, progress: Progress) -> dict[str, str]:
    """``pip wheel --no-deps`` of the source copy into ``out``."""
    progress("building the edge-transfer wheel")
    run_host_or_raise([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                       str(copy)], "building the edge-transfer wheel")
    wheel = next(out.glob("edge_transfer-*.whl"))
    return {"wheel": wheel.name, "version": wheel.name.split("-")[1]}


def _requirements() -> list[str]:
    """The runtimes pinned to the workstation's versions (unpinned where it has none)."""
    pins = []
    for name in PINNED:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _download_wheels(userland: Userland, project_wheel: Path, requirements: list[str],
                     progress: Progress, timings: dict[str, float]) -> list[str]:
    """``pip download`` the aarch64 wheels of the project's dependencies into the wheelhouse."""
    progress(f"pip download (aarch64, cp{PYTHON_VERSION.replace('.', '')}): "
             f"{', '.join(requirements)} and edge-transfer's dependencies")
    partial = userland.path / "wheelhouse.partial"
    _remove_tree(partial)
    start = time.monotonic()
    pip_download(partial, [str(project_wheel), *requirements], "the aarch64 wheels",
                 " (check the network or the package index, then rerun the setup)")
    (partial / project_wheel.name).unlink(missing_ok=True)
    _remove_tree(userland.wheelhouse)
    partial.rename(userland.wheelhouse)
    timings["download"] = round(time.monotonic() - start, 1)
    return sorted(p.name for p in userland.wheelhouse.glob("*.whl"))


def _install(userland: Userland, project_wheel: str, requirements: list[str], rebuild: bool,
             progress: Progress, timings: dict[str, float]) -> None:
    """Create the venv (when ``rebuild``) and install offline from the wheelhouse."""
    binds: dict[str | os.PathLike[str], str] = {
        userland.wheelhouse: WHEELHOUSE, userland.project_wheels: PROJECT_WHEELS}
    # pip runs from its wheel (the venv needs none: ensurepip under emulation costs ~40 s), and
    # --no-compile: byte-compiling every file under emulation costs minutes; Python compiles
    # what it imports on first use instead.
    pip_wheel = next(userland.wheelhouse.glob("pip-*.whl")).name
    pip = [userland.python, f"{WHEELHOUSE}/{pip_wheel}/pip", "install", "-q", "--no-compile",
           "--no-index", "--find-links", WHEELHOUSE, "--find-links", PROJECT_WHEELS,
           "--disable-pip-version-check"]
    start = time.monotonic()
    if rebuild:
        progress(f"creating the venv {VENV} and installing the wheels offline (under emulation)")
        _remove_tree(userland.rootfs / VENV.lstrip("/"))
        checked(chroot_run(userland.rootfs, ["/usr/bin/python3", "-m", "venv", "--without-pip",
                                             VENV], binds={}, timeout=1800), "python3 -m venv")
        checked(chroot_run(userland.rootfs, [*pip, *requirements, "edge-transfer"],
                           binds=binds, timeout=3600), "pip install")
    else:
        progress("installing the new edge-transfer wheel (dependencies unchanged)")
    checked(chroot_run(userland.rootfs, [*pip, "--force-reinstall", "--no-deps",
                                         f"{PROJECT_WHEELS}/{project_wheel}"],
                       binds=binds, timeout=1800), "pip install edge-transfer")
    timings["install"] = round(time.monotonic() - start, 1)
    progress(f"installed in {timings['install']:.0f} s")


_PROBE = """
import importlib.metadata as m, json, platform
import ai_edge_litert.interpreter, onnxruntime, edge_transfer
print(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                  **{n: m.version(n) for n in ("numpy", "ai-edge-litert", "onnxruntime",
                                               "edge-transfer")}}))
"""


def _probe_versions(userland: Userland) -> dict[str, str]:
    proc = checked(chroot_run(userland.rootfs, [userland.python, "-c", _PROBE], binds={},
                              timeout=1800), "the import check")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def checked(proc: subprocess.CompletedProcess[str], what: str,
            where: str = "the emulated arm64 userland",
            rerun: str = "--force") -> subprocess.CompletedProcess[str]:
    """``proc`` when it succeeded; else a DeviceError naming ``what`` failed ``where``, with
    its last line of output and the setup command to rerun."""
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise DeviceError(f"{what} failed in {where} (exit {proc.returncode}): {tail}; "
                          f"rerun `{SETUP_COMMAND} {rerun}`")
    return proc


def _swap_dir(source: Path, target: Path, *, keep: str) -> None:
    """Put ``source/keep`` alone into ``target`` (via a temporary folder and a rename)."""
    partial = target.with_name(target.name + ".partial")
    _remove_tree(partial)
    partial.mkdir()
    shutil.copy2(source / keep, partial / keep)
    _remove_tree(target)
    partial.rename(target)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1].encode().decode("unicode_escape") for line in lines]
    return [p for p in points if (p + "/").startswith(prefix)]


def _unmount_under(path: Path) -> None:
    """Lazily unmount whatever debootstrap left mounted below ``path`` (deepest first)."""
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_tree(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    _unmount_under(path)
    if _mounts_under(path):
        raise DeviceError(f"{path} still has mounts below it; unmount them (see /proc/mounts)")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One setup at a time per folder."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

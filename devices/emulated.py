"""An emulated arm64 device: a Debian arm64 userland run under qemu user-mode emulation.

A workstation's x86-64 LiteRT and ONNX Runtime run other kernels than an arm64 device's (a
Raspberry Pi, a Jetson, a phone). This module builds, once, a Debian bookworm arm64 userland
(``debootstrap --arch=arm64`` + ``qemu-user-static`` through binfmt_misc) with a venv holding the
arm64 wheels of numpy, ai-edge-litert, onnxruntime and this project's light install, and runs
commands inside it (chroot in a private mount namespace: /proc and the binds vanish with it).

It needs root on a Linux host with ``apt-get install debootstrap qemu-user-static``, so the
examples are not run as doctests (tests/test_emulated_arm64.py runs them where it can):

>>> userland = setup_emulated_arm64()                                    # doctest: +SKIP
>>> run_in_userland(userland, ["python", "-c", "import platform; print(platform.machine())"]
...                 ).stdout                                             # doctest: +SKIP
'aarch64\\n'
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edge_transfer.atomic import write_text_atomic
from edge_transfer.errors import DeviceError

SUITE = "bookworm"
INCLUDE = ("python3", "python3-venv")
PYTHON_VERSION = "3.11"  # bookworm's python3
# Bookworm ships glibc 2.36: every manylinux tag up to 2_36 runs (pip does not expand them).
PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)))
# The device's runtimes are pinned to the workstation's versions when it has them, so that a
# difference between the two is the CPU's, not a release's.
PINNED = ("numpy", "ai-edge-litert", "onnxruntime")
VENV = "/opt/edge-transfer/venv"
WHEELHOUSE = "/opt/edge-transfer/wheelhouse"
PROJECT_WHEELS = "/opt/edge-transfer/project"
SETUP_COMMAND = "edge-transfer device setup emulated-arm64"
APT_PACKAGES = "debootstrap qemu-user-static"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
_AARCH64_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
_AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Progress = Callable[[str], None]


def default_dir() -> Path:
    """``$EDGE_TRANSFER_CACHE/emulated-arm64``, else ``~/.cache/edge-transfer/emulated-arm64``.

    >>> default_dir().name
    'emulated-arm64'
    """
    cache = os.environ.get("EDGE_TRANSFER_CACHE")
    base = Path(cache) if cache else Path.home() / ".cache" / "edge-transfer"
    return (base / "emulated-arm64").expanduser().absolute()


@dataclass(frozen=True)
class Userland:
    """The cache folder of one emulated arm64 userland.

    ``rootfs/`` is the Debian tree, ``wheelhouse/`` the arm64 wheels, ``project/`` this
    project's wheel, ``setup.json`` the marker written when the setup finished.

    >>> Userland.at("/tmp/arm64").rootfs
    PosixPath('/tmp/arm64/rootfs')
    """

    path: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str] | None = None) -> Userland:
        return cls(Path(path).expanduser().absolute() if path else default_dir())

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def wheelhouse(self) -> Path:
        return self.path / "wheelhouse"

    @property
    def project_wheels(self) -> Path:
        return self.path / "project"

    @property
    def marker(self) -> Path:
        return self.path / "setup.json"

    @property
    def python(self) -> str:
        """The venv's interpreter, as a path inside the userland."""
        return f"{VENV}/bin/python"

    def info(self) -> dict | None:
        """The setup marker (versions, wheels, timings), or None when the setup never finished."""
        try:
            return json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        return self.info() is not None and (self.rootfs / self.python.lstrip("/")).exists()

    def setup_hint(self) -> str:
        extra = "" if self.path == default_dir() else f" --dir {shlex.quote(str(self.path))}"
        return f"run `{SETUP_COMMAND}{extra}` first"


# ------------------------------------------------------------------------------- host checks


def host_problems(*, uid: int | None = None, for_setup: bool = True) -> list[str]:
    """What this host lacks to build (``for_setup``) or run the userland, each with its fix.

    ``uid`` defaults to this process's effective uid.

    >>> any("root" in p for p in host_problems(uid=1000))
    True
    """
    uid = os.geteuid() if uid is None else uid
    problems = []
    if platform.system() != "Linux":
        problems.append("the emulated arm64 device needs a Linux host (chroot, binfmt_misc)")
    if uid != 0:
        problems.append(
            "it needs root (chroot, mounts, binfmt_misc): run it as root, e.g. "
            f"`sudo {SETUP_COMMAND}`" if for_setup else
            "it needs root (chroot, mounts): run the command as root (e.g. with sudo)"
        )
    tools = {"unshare": "util-linux", "chroot": "coreutils", "mount": "mount"}
    if for_setup:
        tools["debootstrap"] = "debootstrap"
    if not _native():
        tools["qemu-aarch64-static"] = "qemu-user-static"
    for tool, package in tools.items():
        if _which(tool) is None:
            problems.append(f"{tool} is not installed: apt-get install {package}")
    return problems


def check_host(*, uid: int | None = None, for_setup: bool = True) -> None:
    """Raise DeviceError naming everything the host lacks, and how to get it."""
    problems = host_problems(uid=uid, for_setup=for_setup)
    if problems:
        raise DeviceError("emulated arm64 device: " + "; ".join(problems))


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
        source = _project_source()
    except DeviceError:
        return None
    installed = ((userland.info() or {}).get("project") or {}).get("fingerprint")
    with tempfile.TemporaryDirectory(prefix="edge-transfer-src-") as tmp:
        _, fingerprint = _copy_source(source, Path(tmp) / "src")
    if installed == fingerprint:
        return None
    return (f"the userland in {userland.path} holds another edge-transfer than {source}: "
            f"run `{SETUP_COMMAND}"
            f"{'' if userland.path == default_dir() else ' --dir ' + str(userland.path)}` "
            "(it reuses the rootfs and wheels and reinstalls edge-transfer only)")


def _native() -> bool:
    return platform.machine() in ("aarch64", "arm64")


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=os.environ.get("PATH", "") + os.pathsep + _PATH)


def binfmt_state() -> str:
    """``native``, ``enabled``, ``disabled``, ``unregistered`` or ``unmounted``."""
    if _native():
        return "native"
    if not (BINFMT / "register").exists():
        return "unmounted"
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        return "unregistered"
    return "enabled" if entry.read_text().startswith("enabled") else "disabled"


def ensure_binfmt(progress: Progress = print) -> None:
    """Make the kernel run arm64 ELF files through qemu-aarch64-static (root only).

    Mounts binfmt_misc if needed, then enables Debian's qemu-aarch64 entry
    (``update-binfmts``) or registers one itself with the F flag (the interpreter is opened
    now, so it need not exist inside the chroot).
    """
    state = binfmt_state()
    if state in ("native", "enabled"):
        return
    fix = ("register it on the host with `update-binfmts --enable qemu-aarch64` (package "
           "qemu-user-static); in a container, start it with --privileged or register arm64 "
           "on the host (e.g. `docker run --privileged --rm tonistiigi/binfmt --install arm64`)")
    try:
        if state == "unmounted":
            progress("binfmt: mounting binfmt_misc")
            _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
            state = binfmt_state()
        if state == "disabled":
            (BINFMT / "qemu-aarch64").write_text("1")
        elif state == "unregistered":
            debian_entry = Path("/usr/share/binfmts/qemu-aarch64")
            if _which("update-binfmts") and debian_entry.exists():
                progress("binfmt: update-binfmts --enable qemu-aarch64")
                _run(["update-binfmts", "--enable", "qemu-aarch64"])
            if binfmt_state() != "enabled":
                qemu = _which("qemu-aarch64-static")
                progress(f"binfmt: registering qemu-aarch64 -> {qemu} (flags F)")
                (BINFMT / "register").write_text(
                    f":qemu-aarch64:M::{_AARCH64_MAGIC}:{_AARCH64_MASK}:{qemu}:F")
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        raise DeviceError(f"arm64 binaries cannot run here: binfmt_misc registration of "
                          f"qemu-aarch64 failed ({detail.strip()}); {fix}") from None
    if binfmt_state() != "enabled":
        raise DeviceError(f"arm64 binaries cannot run here: qemu-aarch64 is not enabled in "
                          f"binfmt_misc; {fix}")


def _binfmt_interpreter() -> tuple[str, str] | None:
    """(interpreter, flags) of the qemu-aarch64 entry, when one is registered."""
    try:
        text = (BINFMT / "qemu-aarch64").read_text()
    except OSError:
        return None
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    return fields.get("interpreter", ""), fields.get("flags:", "")


def _install_interpreter(rootfs: Path) -> None:
    """Without the F flag the kernel looks the interpreter up inside the chroot: copy it there."""
    entry = _binfmt_interpreter()
    if entry is None or "F" in entry[1] or not entry[0]:
        return
    target = rootfs / entry[0].lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(entry[0]), target)


# -------------------------------------------------------------------------------- the mirror


def host_debian_mirror(
    sources: Sequence[Path] = (Path("/etc/apt/sources.list.d/debian.sources"),
                               Path("/etc/apt/sources.list")),
) -> str | None:
    """The Debian mirror the host's apt uses (not its security one), or None to let
    debootstrap pick its default.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "sources.list"
    >>> _ = p.write_text("deb http://ftp.de.debian.org/debian bookworm main\\n")
    >>> host_debian_mirror([p])
    'http://ftp.de.debian.org/debian'
    """
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri, suites in _source_entries(text):
            if uri.startswith(("http://", "https://")) and any(
                    s.split("-")[0] in _DEBIAN_SUITES and "security" not in s for s in suites):
                return uri.rstrip("/")
    return None


_DEBIAN_SUITES = {"bullseye", "bookworm", "trixie", "forky", "sid", "stable", "testing",
                  "unstable", "oldstable"}


def _source_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) of deb entries, in one-line (sources.list) or deb822 format."""
    for line in text.splitlines():
        match = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
        if match:
            yield match.group(1), [match.group(2)]
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if ":" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and "uris" in fields:
            for uri in fields["uris"].split():
                yield uri, fields.get("suites", "").split()


# ---------------------------------------------------------------------------------- running


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
    return _chroot_run(userland.rootfs, argv, binds=binds or {}, env=env, timeout=timeout)


def _chroot_run(
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
    child_env = {"PATH": f"{VENV}/bin:{_PATH}", "HOME": "/root", "LANG": "C.UTF-8",
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


# ------------------------------------------------------------------------------------ setup


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
            progress(f"--force: removing {userland.rootfs} and rebuilding everything")
            _remove_tree(userland.rootfs)
            for stale in (userland.marker, userland.path / "rootfs.json"):
                stale.unlink(missing_ok=True)
        timings = _build_rootfs(userland, progress)
        previous = userland.info() or {}
        with tempfile.TemporaryDirectory(prefix="edge-transfer-wheel-") as tmp:
            copy, fingerprint = _copy_source(_project_source(), Path(tmp) / "src")
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
                                text=True, env={**os.environ, "PATH": _PATH})
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
    _install_interpreter(partial)
    partial.rename(userland.rootfs)
    seconds = round(time.monotonic() - start, 1)
    _write_json(stamp, {"debootstrap": wanted, "mirror": mirror, "seconds": seconds})
    progress(f"debootstrap: done in {seconds:.0f} s")
    return {"debootstrap": seconds}


def _project_source() -> Path:
    """The source tree this edge-transfer was imported from (the wheel is built from it)."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").exists() and (root / "edge_transfer").is_dir():
        return root
    raise DeviceError("the emulated arm64 setup builds edge-transfer's wheel from its source "
                      f"tree, and {root} is not one: run the setup from a source checkout "
                      "(git clone ...; pip install -e .)")


_SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "edge_transfer", "devices",
                 "exporters")


def _copy_source(source: Path, copy: Path) -> tuple[Path, str]:
    """A clean copy of the project's source (the checkout stays untouched) and its sha256."""
    copy.mkdir()
    for part in _SOURCE_PARTS:
        path = source / part
        if path.is_dir():
            shutil.copytree(path, copy / part,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        elif path.is_file():
            shutil.copy2(path, copy / part)
    digest = hashlib.sha256()
    for path in sorted(p for p in copy.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(copy)).encode() + b"\0" + path.read_bytes())
    return copy, digest.hexdigest()


def _build_project_wheel(copy: Path, out: Path, progress: Progress) -> dict[str, str]:
    """``pip wheel --no-deps`` of the source copy into ``out``."""
    progress("building the edge-transfer wheel")
    try:
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
              str(copy)])
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise DeviceError(f"building the edge-transfer wheel failed: {tail[0]}") from None
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
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    try:
        _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
              "--python-version", PYTHON_VERSION, "--implementation", "cp", *platforms,
              "-d", str(partial), str(project_wheel), *requirements, "pip"])
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise DeviceError(f"pip download of the aarch64 wheels failed: {tail[0]} (check the "
                          "network or the package index, then rerun the setup)") from None
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
        _check(_chroot_run(userland.rootfs, ["/usr/bin/python3", "-m", "venv", "--without-pip",
                                             VENV], binds={}, timeout=1800), "python3 -m venv")
        _check(_chroot_run(userland.rootfs, [*pip, *requirements, "edge-transfer"],
                           binds=binds, timeout=3600), "pip install")
    else:
        progress("installing the new edge-transfer wheel (dependencies unchanged)")
    _check(_chroot_run(userland.rootfs, [*pip, "--force-reinstall", "--no-deps",
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
    proc = _check(_chroot_run(userland.rootfs, [userland.python, "-c", _PROBE], binds={},
                              timeout=1800), "the import check")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(proc: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise DeviceError(f"{what} failed in the emulated arm64 userland (exit "
                          f"{proc.returncode}): {tail}; rerun `{SETUP_COMMAND} --force`")
    return proc


# ---------------------------------------------------------------------------------- helpers


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, capture_output=True, text=True,
                          env={**os.environ, "PATH": os.environ.get("PATH", "") + ":" + _PATH})


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

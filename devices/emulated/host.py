"""Host checks for the emulated arm64 device: what this host lacks (root, tools, a Linux
kernel with binfmt_misc), qemu's binfmt_misc registration, and the host's Debian mirror.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from devices.emulated.userland import (
    PLATFORMS,
    PYTHON_VERSION,
    SETUP_COMMAND,
    SYSTEM_PATH,
    Progress,
)
from edge_transfer.core.errors import DeviceError

BINFMT = Path("/proc/sys/fs/binfmt_misc")
_AARCH64_MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
_AARCH64_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"


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
    if not native():
        tools["qemu-aarch64-static"] = "qemu-user-static"
    for tool, package in tools.items():
        if which(tool) is None:
            problems.append(f"{tool} is not installed: apt-get install {package}")
    return problems


def check_host(*, uid: int | None = None, for_setup: bool = True) -> None:
    """Raise DeviceError naming everything the host lacks, and how to get it."""
    problems = host_problems(uid=uid, for_setup=for_setup)
    if problems:
        raise DeviceError("emulated arm64 device: " + "; ".join(problems))


def native() -> bool:
    return platform.machine() in ("aarch64", "arm64")


def which(tool: str) -> str | None:
    return shutil.which(tool, path=os.environ.get("PATH", "") + os.pathsep + SYSTEM_PATH)


def binfmt_state() -> str:
    """``native``, ``enabled``, ``disabled``, ``unregistered`` or ``unmounted``."""
    if native():
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
            run_host(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
            state = binfmt_state()
        if state == "disabled":
            (BINFMT / "qemu-aarch64").write_text("1")
        elif state == "unregistered":
            debian_entry = Path("/usr/share/binfmts/qemu-aarch64")
            if which("update-binfmts") and debian_entry.exists():
                progress("binfmt: update-binfmts --enable qemu-aarch64")
                run_host(["update-binfmts", "--enable", "qemu-aarch64"])
            if binfmt_state() != "enabled":
                qemu = which("qemu-aarch64-static")
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


def install_interpreter(rootfs: Path) -> None:
    """Without the F flag the kernel looks the interpreter up inside the chroot: copy it there."""
    entry = _binfmt_interpreter()
    if entry is None or "F" in entry[1] or not entry[0]:
        return
    target = rootfs / entry[0].lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(entry[0]), target)


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


def run_host(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a host command (the sbin folders on the PATH); CalledProcessError when it fails."""
    path = os.environ.get("PATH", "") + ":" + SYSTEM_PATH
    return subprocess.run(command, check=True, capture_output=True, text=True,
                          env={**os.environ, "PATH": path})


def run_host_or_raise(command: list[str], failed: str, fix: str = "") -> None:
    """:func:`run_host`, or a DeviceError ``'<failed> failed: <its last line of stderr><fix>'``."""
    try:
        run_host(command)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise DeviceError(f"{failed} failed: {tail[0]}{fix}") from None


def pip_download(dest: Path, packages: Sequence[str], what: str, fix: str = "") -> None:
    """``pip download`` on the host the aarch64 CPython wheels of ``packages`` and of pip
    itself into ``dest``; a DeviceError naming ``what`` when pip fails."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    run_host_or_raise([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                       "--python-version", PYTHON_VERSION, "--implementation", "cp",
                       *platforms, "-d", str(dest), *packages, "pip"],
                      f"pip download of {what}", fix)

"""The deploy clients inside the emulated arm64 userland: a second venv
(``/opt/edge-transfer/clients-venv``) holding the arm64 wheels of MediaPipe, OpenVINO and its
Model API, beside the runtimes' venv, so ``validate --device emulated:arm64 --client ...``
runs them where an arm64 device would. Built by ``edge-transfer device setup emulated-arm64
--clients`` (reused while its packages are the same).

Not run as a doctest (it needs the userland and root):

>>> setup_clients(Userland.at())                                         # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from devices.emulated.build import checked
from devices.emulated.host import pip_download
from devices.emulated.inside import chroot_run
from devices.emulated.userland import Progress, Userland
from edge_transfer.core.atomic import write_text_atomic

CLIENTS_VENV = "/opt/edge-transfer/clients-venv"
CLIENTS_WHEELHOUSE = "/opt/edge-transfer/clients-wheelhouse"
# The clients that have arm64 wheels on PyPI (all four, checked 2026-12: mediapipe 1.2.3
# manylinux_2_28, openvino 2026.4.1 manylinux_2_35; bookworm's glibc is 2.36).
PACKAGES = ("mediapipe", "openvino", "openvino-model-api[onnx]", "ai-edge-litert", "onnxruntime")
# Debian packages of the shared libraries MediaPipe's libmediapipe.so links (NEEDED: libEGL.so.1,
# libGLESv2.so.2; without them: "libEGL.so.1: cannot open shared object file"), installed with
# the userland's own apt, so the base rootfs (and its 25-minute debootstrap) stays as it is.
SYSTEM_PACKAGES = {"libegl1": "libEGL.so.1", "libgles2": "libGLESv2.so.2"}


def clients_python(userland: Userland) -> str | None:
    """The clients' Python inside the userland, or None when they were not set up."""
    stamp = userland.path / "clients.json"
    ready = stamp.exists() and (userland.rootfs / CLIENTS_VENV.lstrip("/") / "bin").exists()
    return f"{CLIENTS_VENV}/bin/python" if ready else None


def setup_clients(userland: Userland, progress: Progress = print) -> dict[str, str]:
    """Download the clients' arm64 wheels and install them into their own venv inside the
    userland (offline, under emulation); reused when done with the same packages."""
    stamp = userland.path / "clients.json"
    system_libraries(userland, progress)
    reused = _reused(userland, stamp, progress)
    if reused is not None:
        return reused
    stamp.unlink(missing_ok=True)
    wheels = userland.path / "clients-wheelhouse"
    progress(f"pip download (aarch64): {', '.join(PACKAGES)}")
    start = time.monotonic()
    pip_download(wheels, PACKAGES, "the clients' aarch64 wheels")
    progress(f"creating {CLIENTS_VENV} and installing the clients offline (under emulation)")
    versions = _install(userland, wheels)
    seconds = round(time.monotonic() - start, 1)
    write_text_atomic(stamp, json.dumps({"packages": list(PACKAGES), "versions": versions,
                                         "seconds": seconds}, indent=2) + "\n")
    progress(f"clients ready in {seconds:.0f} s: "
             f"{', '.join(f'{k} {v}' for k, v in versions.items())}")
    return versions


def _reused(userland: Userland, stamp: Path, progress: Progress) -> dict[str, str] | None:
    """The clients' versions when their venv is there, set up with these packages."""
    try:
        done = json.loads(stamp.read_text())
        if done.get("packages") == list(PACKAGES) and clients_python(userland):
            progress(f"reusing the clients' venv {CLIENTS_VENV}")
            return dict(done["versions"])
    except (OSError, ValueError):
        pass
    return None


def _install(userland: Userland, wheels: Path) -> dict[str, str]:
    """Install the clients from ``wheels`` into their venv (created if missing), offline;
    the versions that import."""
    pip_wheel = next(wheels.glob("pip-*.whl")).name
    binds: dict[str | os.PathLike[str], str] = {wheels: CLIENTS_WHEELHOUSE}
    if not (userland.rootfs / CLIENTS_VENV.lstrip("/") / "bin" / "python").exists():
        _check(chroot_run(userland.rootfs, ["/usr/bin/python3", "-m", "venv", "--without-pip",
                                             CLIENTS_VENV], binds={}, timeout=1800),
               "python3 -m venv")
    pip = [f"{CLIENTS_VENV}/bin/python", f"{CLIENTS_WHEELHOUSE}/{pip_wheel}/pip", "install",
           "-q", "--no-compile", "--no-index", "--find-links", CLIENTS_WHEELHOUSE,
           "--disable-pip-version-check"]
    _check(chroot_run(userland.rootfs, [*pip, *PACKAGES], binds=binds, timeout=3600),
           "pip install")
    # MediaPipe's opencv-contrib-python and the Model API's opencv-python-headless both
    # install cv2; the contrib one needs X libraries (libxcb) a minimal Debian lacks. The
    # headless cv2 last: both clients run with it.
    _check(chroot_run(userland.rootfs, [*pip, "--force-reinstall", "--no-deps",
                                         "opencv-python-headless"], binds=binds, timeout=3600),
           "pip install opencv-python-headless")
    return json.loads(_check(chroot_run(userland.rootfs, [
        f"{CLIENTS_VENV}/bin/python", "-c", _PROBE], binds={}, timeout=1800),
        "the clients' import check").stdout.strip().splitlines()[-1])


_PROBE = """
import importlib.metadata as m, json
import mediapipe, openvino, model_api, ai_edge_litert.interpreter, onnxruntime
print(json.dumps({n: m.version(n) for n in ("mediapipe", "openvino", "openvino-model-api",
                                            "ai-edge-litert", "onnxruntime")}))
"""


def system_libraries(userland: Userland, progress: Progress = print) -> list[str]:
    """``apt-get install`` :data:`SYSTEM_PACKAGES` inside the userland where their libraries are
    missing (apt runs under emulation and downloads from the rootfs's mirror); the packages
    installed."""
    libdir = userland.rootfs / "usr/lib/aarch64-linux-gnu"
    missing = [name for name, library in SYSTEM_PACKAGES.items()
               if not (libdir / library).exists()]
    if missing:
        progress(f"apt-get install (arm64, inside the userland): {', '.join(missing)}")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        _check(chroot_run(userland.rootfs, ["apt-get", "update", "-q"], binds={}, env=env,
                          timeout=1800), "apt-get update")
        _check(chroot_run(userland.rootfs, ["apt-get", "install", "-y", "-q",
                                             "--no-install-recommends", *missing],
                          binds={}, env=env, timeout=3600), "apt-get install")
    return missing


def _check(proc: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    return checked(proc, what, "the clients' venv of the emulated arm64 userland", "--clients")

"""The emulated arm64 userland: its cache folder (:class:`Userland`), what goes inside it
(the pinned runtimes, this project's source) and where.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_transfer.core.errors import DeviceError

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
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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


def project_source() -> Path:
    """The source tree this edge-transfer was imported from (the wheel is built from it)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").exists() and (root / "edge_transfer").is_dir():
        return root
    raise DeviceError("the emulated arm64 setup builds edge-transfer's wheel from its source "
                      f"tree, and {root} is not one: run the setup from a source checkout "
                      "(git clone ...; pip install -e .)")


SOURCE_PARTS = ("pyproject.toml", "README.md", "LICENSE", "edge_transfer", "devices",
                 "exporters")


def copy_source(source: Path, copy: Path) -> tuple[Path, str]:
    """A clean copy of the project's source (the checkout stays untouched) and its sha256."""
    copy.mkdir()
    for part in SOURCE_PARTS:
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

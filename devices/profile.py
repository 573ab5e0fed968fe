"""Device profiles: what a target runs and the budgets a model must fit, as TOML data files.

The built-in profiles live in ``devices/profiles/*.toml``, one file a device, found by its
file name, which must be its ``name`` (a new device is one new file there). A user's own file
works the same, passed by path::

    name = "my-board"
    arch = "aarch64"                    # as `uname -m` says it; arm64/amd64 mean the same
    formats = ["tflite"]                # optional, default: every format the runtime runs
    precisions = ["int8"]               # of the precisions the exporters produce
    threads = 4
    ram_mb = 1024
    storage_mb = 256
    latency_budget_ms = 15.0
    accuracy_tolerance = 0.005          # optional, default: the bundle's
    stand_in = "emulated:arm64"         # optional: what `validate --device stand-in` runs on

>>> load_profile("coral-dev-board").precisions
('int8',)
>>> "generic-x86-64" in list_profiles()
True
>>> normalize_arch("arm64"), normalize_arch("AMD64")
('aarch64', 'x86_64')

``runtime`` (a format name) was a field once and never changed anything: a file that still
has it loads with a warning to remove it (``formats`` says what the device runs).
"""

from __future__ import annotations

import json
import platform
import sys
import warnings
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import exporters
from edge_transfer.core.errors import DeviceError
from edge_transfer.runtime.backends import BACKENDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMATS: tuple[str, ...] = tuple(BACKENDS)          # what the device runtime runs
PRECISIONS: tuple[str, ...] = exporters.precisions()  # what the exporters produce
ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
DEFAULT_PROFILES = {"x86_64": "generic-x86-64"}  # used when no --profile is given


def normalize_arch(arch: str) -> str:
    """One spelling per architecture, the one ``uname -m`` prints on Linux."""
    arch = arch.strip().lower()
    return ARCH_ALIASES.get(arch, arch)


def machine_arch() -> str:
    """This machine's architecture, normalised (:func:`normalize_arch`)."""
    return normalize_arch(platform.machine())


@dataclass(frozen=True)
class DeviceProfile:
    """One target device: architecture, what it runs, and its budgets."""

    name: str
    arch: str
    precisions: tuple[str, ...]
    threads: int
    ram_mb: float
    storage_mb: float
    latency_budget_ms: float
    formats: tuple[str, ...] = FORMATS
    accuracy_tolerance: float | None = None
    stand_in: str | None = None
    description: str = ""
    source: str = ""
    float_fallback: bool = True   # False: runs fully int8 models only (no int8-mixed)

    def cannot_run(self, fmt: str, precision: str,
                   kept_float: tuple[str, ...] = ()) -> str | None:
        """Why this device cannot run a ``fmt`` model of ``precision`` (with ``kept_float``
        layers left in float by ``--keep-float``), or None if it can."""
        if fmt not in self.formats:
            return f"{self.name} does not run {fmt} models (runs {', '.join(self.formats)})"
        if precision not in self.precisions:
            return (f"{self.name} does not run {precision} models "
                    f"(runs {', '.join(self.precisions)})")
        if kept_float and not self.float_fallback:
            return (f"{self.name} runs fully int8 models only; this int8-mixed model keeps "
                    f"{len(kept_float)} layer(s) in float ({', '.join(kept_float[:3])})")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}


def list_profiles() -> list[str]:
    """Names of the built-in profiles, sorted."""
    folder = resources.files("devices").joinpath("profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A built-in profile by name, or a TOML file of the same fields."""
    text = str(name_or_path)
    if text in list_profiles():
        source = resources.files("devices").joinpath(f"profiles/{text}.toml")
        profile = _parse(source.read_text(), f"built-in profile {text}")
        if profile.name != text:
            raise DeviceError(f"built-in profile {text}: its name is {profile.name!r} but "
                              f"--profile finds it as {text!r}; make the file name "
                              f"{profile.name}.toml or the name {text!r}")
        return profile
    path = Path(text)
    if not path.is_file():
        raise DeviceError(f"unknown device profile {text!r}; use one of "
                          f"{', '.join(list_profiles())} or a .toml file")
    try:
        content = path.read_text()
    except OSError as exc:
        raise DeviceError(f"cannot read profile {path}: {exc}") from exc
    return _parse(content, str(path))


_Kind = type | tuple[type, ...]
_REQUIRED: dict[str, _Kind] = {
    "name": str, "arch": str, "precisions": list, "threads": int,
    "ram_mb": (int, float), "storage_mb": (int, float), "latency_budget_ms": (int, float),
}
_OPTIONAL: dict[str, _Kind] = {
    "formats": list, "accuracy_tolerance": (int, float), "description": str, "stand_in": str,
    "float_fallback": bool,
    "runtime": str,  # no effect (see the module docstring); accepted with a warning
}
EMULATED_ARM64 = "emulated:arm64"
STAND_INS = (EMULATED_ARM64,)


def _parse(content: str, source: str) -> DeviceProfile:
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise DeviceError(f"{source} is not valid TOML: {exc}") from exc
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in data:
            if key in _REQUIRED:
                raise DeviceError(f"{source}: field {key!r} is missing; add it (see "
                                  "`edge-transfer devices` for examples)")
            continue
        value = data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise DeviceError(f"{source}: field {key!r} has the wrong type "
                              f"({type(value).__name__}: {value!r})")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise DeviceError(f"{source}: unknown field(s) {', '.join(unknown)}; remove them")
    formats = tuple(data.get("formats", FORMATS))
    precisions = tuple(data["precisions"])
    _check_choice(source, "formats", formats, FORMATS)
    if "runtime" in data:
        _check_choice(source, "runtime", [data["runtime"]], formats)
        warnings.warn(f"{source}: field 'runtime' has no effect (formats = {list(formats)} "
                      "says what the device runs); remove it", FutureWarning, stacklevel=3)
    _check_choice(source, "precisions", precisions, PRECISIONS)
    for key in ("threads", "ram_mb", "storage_mb", "latency_budget_ms"):
        if data[key] <= 0:
            raise DeviceError(f"{source}: field {key!r} must be positive, got {data[key]}")
    tolerance = data.get("accuracy_tolerance")
    if tolerance is not None and not 0 <= tolerance < 1:
        raise DeviceError(f"{source}: field 'accuracy_tolerance' is a fraction in [0, 1), "
                          f"got {tolerance}")
    stand_in = data.get("stand_in")
    if stand_in is not None and stand_in not in STAND_INS:
        raise DeviceError(f"{source}: field 'stand_in' is {stand_in!r}; choose from "
                          f"{', '.join(STAND_INS)}")
    return DeviceProfile(
        name=data["name"], arch=normalize_arch(data["arch"]), precisions=precisions,
        threads=data["threads"], ram_mb=float(data["ram_mb"]),
        storage_mb=float(data["storage_mb"]),
        latency_budget_ms=float(data["latency_budget_ms"]), formats=formats,
        accuracy_tolerance=None if tolerance is None else float(tolerance),
        stand_in=stand_in, description=data.get("description", ""), source=source,
        float_fallback=bool(data.get("float_fallback", True)),
    )


def _check_choice(source: str, key: str, values: Any, allowed: tuple[str, ...]) -> None:
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise DeviceError(f"{source}: field {key!r} has {bad or 'no values'}; "
                          f"choose from {', '.join(allowed)}")


def resolve_profile(profile: str | Path | DeviceProfile | None) -> DeviceProfile | None:
    """A profile given by name, file or value; none given: this machine's default, if any."""
    if isinstance(profile, DeviceProfile):
        return profile
    if profile is not None:
        return load_profile(profile)
    default = DEFAULT_PROFILES.get(machine_arch())
    return load_profile(default) if default else None


def write_profile(profile: DeviceProfile, folder: Path) -> Path:
    """``profile`` as ``FOLDER/NAME.toml``, to pass to another process or device.

    >>> import tempfile
    >>> path = write_profile(load_profile("coral-dev-board"), Path(tempfile.mkdtemp()))
    >>> load_profile(path).precisions, path.name
    (('int8',), 'coral-dev-board.toml')
    """
    lines = []
    for key, value in profile.to_dict().items():
        if key == "source" or value is None:
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    path = folder / f"{profile.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path

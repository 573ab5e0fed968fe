"""Validate a bundle on a device and return the validation JSON (schema_version 1): which
device runs it, one module per way of reaching one.

Devices:

- ``"local"``: this machine; every artifact runs in its own child process with the
  profile's threads (:mod:`devices.local`), so a crash in a native runtime becomes a failed
  row, and peak memory is that model's own.
- ``"self"``: in this very process (what the child runs, :mod:`devices.in_process`).
- ``"ssh://user@host[:port]"``: copy the bundle, run ``edge-transfer validate --device
  local`` on the device, bring the JSON back (see :mod:`devices.ssh`).
- ``"emulated:arm64"``: the real arm64 builds of LiteRT and ONNX Runtime in a Debian arm64
  userland under qemu (set up once with ``edge-transfer device setup emulated-arm64``, needs
  root), compared with the workstation on the same sample (:mod:`devices.emulated.compare`).
- ``"stand-in"``: the profile's ``stand_in`` device (e.g. ``emulated:arm64`` for the
  Raspberry Pi profiles), for when the real board is not at hand.

Not run as a doctest (it needs a bundle; tests/test_devices.py builds one):

>>> result = validate("bundles/target", profile="raspberry-pi-5")   # doctest: +SKIP
>>> [(a.name, a.status) for a in result.artifacts]                  # doctest: +SKIP
[('tflite-fp32', 'ok'), ('tflite-int8', 'ok'), ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from devices.clients import parse_clients
from devices.clients.validate import with_clients
from devices.emulated.compare import validate_emulated
from devices.local import validate_local
from devices.profile import (
    EMULATED_ARM64,
    DeviceProfile,
    list_profiles,
    load_profile,
    resolve_profile,
)
from devices.ssh import validate_ssh
from edge_transfer.core.errors import DeviceError
from edge_transfer.core.records.base import as_dict
from edge_transfer.core.records.validation import ValidationResult

STAND_IN = "stand-in"


def validate(
    bundle_dir: str | Path,
    device: str = "local",
    profile: str | Path | DeviceProfile | None = None,
    threads: int | None = None,
    data: str | None = None,
    *,
    artifacts: Sequence[str] = (),
    remote_command: str = "edge-transfer",
    ssh_options: Sequence[str] = (),
    identity: str | None = None,
    connect_timeout: int = 10,
    timeout: float = 1800,
    outputs: str | Path | None = None,
    clients: Sequence[str] = (),
    clients_python: str | None = None,
) -> ValidationResult:
    """Run every artifact of a bundle on ``device``; rows of pass/fail/skip per budget.

    ``outputs``: a folder where each artifact's raw outputs on the sample are saved as
    ``NAME.npy`` (float32, output units), to compare devices (local and self only).
    ``clients``: deploy clients (:mod:`devices.clients`) that run every file too, on the
    same device and images, each compared with our runtime (``result.clients``).
    :func:`validate_bundle` is the same, returning the validation JSON as a dict.
    """
    if threads is not None and threads < 1:
        raise DeviceError(f"--threads must be at least 1, got {threads}")
    if device == STAND_IN:
        device = _stand_in(profile)
    clients = parse_clients(clients)
    if device == EMULATED_ARM64:
        return validate_emulated(Path(bundle_dir), profile, threads, data, artifacts, timeout,
                                 clients)
    if device.startswith("ssh://"):
        return validate_ssh(Path(bundle_dir), device, profile, threads, data, artifacts,
                            remote_command, ssh_options, identity, connect_timeout, timeout,
                            clients)
    if device not in ("local", "self"):
        raise DeviceError(f"unknown device {device!r}; use local, ssh://user@host[:port], "
                          f"{EMULATED_ARM64} or {STAND_IN} (with --profile)")
    result = validate_local(bundle_dir, device, profile, threads, data, artifacts, timeout,
                            outputs)
    return with_clients(result, bundle_dir, clients, data, clients_python, timeout)


validate_bundle = as_dict(validate)


def _stand_in(profile: str | Path | DeviceProfile | None) -> str:
    """The device a profile names as its stand-in (``stand_in = "emulated:arm64"``)."""
    named = [n for n in list_profiles() if load_profile(n).stand_in]
    if profile is None:
        raise DeviceError(f"--device {STAND_IN} runs the profile's stand-in device: pass "
                          f"--profile NAME, one of {', '.join(named)}")
    resolved = resolve_profile(profile)
    assert resolved is not None
    if resolved.stand_in is None:
        raise DeviceError(f"profile {resolved.name} names no stand-in device; use a profile "
                          f"that does ({', '.join(named)}) or add stand_in = "
                          f"\"{EMULATED_ARM64}\" to it")
    return resolved.stand_in

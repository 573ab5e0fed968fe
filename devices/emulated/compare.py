"""``--device emulated:arm64``: validate a bundle in the arm64 userland and on this
workstation, on the same sample, and compare the two devices' outputs.

Each row gains ``agreement``: the arm64 outputs against the workstation's (``top1``
agreement, ``max_abs_diff`` in output units). Latency measured under emulation is labelled
``"emulated": true`` and never checked.

>>> import tempfile; d = Path(tempfile.mkdtemp())
>>> np.save(d / "a.npy", np.array([[0.9, 0.1], [0.4, 0.6]], np.float32))
>>> np.save(d / "b.npy", np.array([[0.8, 0.2], [0.6, 0.4]], np.float32))
>>> a = agreement(d / "a.npy", d / "b.npy", None)
>>> a.top1, round(a.max_abs_diff, 3), a.samples
(0.5, 0.2, 2)
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from devices.emulated.clients import clients_python
from devices.emulated.inside import check_ready, validate_in_userland
from devices.emulated.userland import SETUP_COMMAND, Userland
from devices.local import validate_local
from devices.profile import (
    EMULATED_ARM64,
    DeviceProfile,
    machine_arch,
    resolve_profile,
    write_profile,
)
from edge_transfer.core.errors import DeviceError
from edge_transfer.core.records.base import MalformedRecord
from edge_transfer.core.records.device import DeviceInfo
from edge_transfer.core.records.validation import Agreement, ValidationResult, ValidationRow
from edge_transfer.deploy.bundle import open_bundle

LATENCY_EMULATED = ("measured under qemu emulation on the workstation, not on the device: "
                    "never checked against a latency budget; run on the device "
                    "(--device ssh://...) to check it")


def validate_emulated(
    bundle_dir: Path, profile: str | Path | DeviceProfile | None, threads: int | None,
    data: str | None, artifacts: Sequence[str], timeout: float, clients: Sequence[str] = (),
) -> ValidationResult:
    """Validate in the arm64 userland and on this workstation, on the same sample; compare.
    ``clients`` run inside the userland, in the clients its venv holds."""
    userland = Userland.at()
    check_ready(userland)  # not set up, stale or not root: exit 2 with the fix
    resolved = resolve_profile(profile) if profile is not None else None
    with tempfile.TemporaryDirectory(prefix="edge-transfer-arm64-") as name:
        tmp = Path(name)
        bundle = open_bundle(bundle_dir, extract_to=tmp / "bundle")  # every sha256 first
        options, binds = _inside_options(resolved, threads, data, artifacts, tmp)
        options += [arg for client in clients for arg in ("--client", client)]
        python = clients_python(userland)
        if clients and python:  # else the runtimes' venv: litert and onnxruntime only
            options += ["--client-python", python]
        # validate_local checks the --artifact names and --data on the host first (exit 2)
        reference = validate_local(bundle.path, "local", resolved, threads, data,
                                   artifacts=artifacts, timeout=timeout,
                                   outputs=tmp / "workstation")
        try:
            result = ValidationResult.from_dict(validate_in_userland(
                bundle.path, options, userland=userland, binds=binds, out_dir=tmp / "arm64",
                timeout=timeout))
        except MalformedRecord as exc:
            raise DeviceError(f"the arm64 userland returned a malformed validation result "
                              f"({exc}); set it up again: `edge-transfer device setup "
                              "emulated-arm64`") from exc
        rows = tuple(dataclasses.replace(
            label_emulated(row),
            agreement=agreement(tmp / "workstation" / f"{row.name}.npy",
                                tmp / "arm64" / "outputs" / f"{row.name}.npy",
                                reference.row(row.name)))
            for row in result.artifacts)
    versions = (userland.info() or {}).get("versions") or {}
    device = DeviceInfo(name=EMULATED_ARM64, profile=resolved.name if resolved else None,
                        arch=result.device.arch or "aarch64", emulated=True,
                        host_arch=machine_arch(),
                        runtimes={k: versions.get(k) for k in ("ai-edge-litert",
                                                               "onnxruntime", "numpy")})
    hint = f"; or `{SETUP_COMMAND} --clients` installs them in the userland"
    missing = tuple(dataclasses.replace(c, reason=f"{c.reason}{hint}") if c.status == "missing"
                    else c for c in result.clients)
    return dataclasses.replace(result, device=device, bundle=str(bundle_dir), data=data,
                               artifacts=rows, clients=missing)


def _inside_options(
    profile: DeviceProfile | None, threads: int | None, data: str | None,
    artifacts: Sequence[str], tmp: Path,
) -> tuple[list[str], dict[str | os.PathLike[str], str]]:
    """The ``validate`` options inside the userland, and the host files bound there."""
    options: list[str] = ["--outputs", "/mnt/out/outputs"]
    binds: dict[str | os.PathLike[str], str] = {}
    if profile is not None:
        binds[write_profile(profile, tmp)] = "/mnt/profile.toml"
        options += ["--profile", "/mnt/profile.toml"]
    if threads is not None:
        options += ["--threads", str(threads)]
    if data is not None and Path(data).exists():
        binds[Path(data).absolute()] = f"/mnt/data/{Path(data).name}"
        options += ["--data", f"/mnt/data/{Path(data).name}"]
    elif data is not None:
        options += ["--data", data]
    for artifact in artifacts:
        options += ["--artifact", artifact]
    return options, binds


def label_emulated(row: ValidationRow) -> ValidationRow:
    """Latency measured under emulation: labelled, its check a skip."""
    checks = tuple(
        dataclasses.replace(c, status="skip", emulated=True,
                            detail=LATENCY_EMULATED if row.ok else c.detail)
        if c.name == "latency" else c for c in row.checks)
    return dataclasses.replace(row, emulated=True, checks=checks)


def agreement(ours: Path, theirs: Path, reference: ValidationRow | None) -> Agreement | None:
    """Top-1 agreement and the largest output difference of two devices' saved outputs (see
    the module's example)."""
    if not (ours.is_file() and theirs.is_file()):
        return None
    a = np.load(ours, allow_pickle=False).astype(np.float64)
    b = np.load(theirs, allow_pickle=False).astype(np.float64)
    if a.shape != b.shape:
        return Agreement(detail=f"output shapes differ: {a.shape} here, {b.shape} on the device")
    return Agreement(top1=float(np.mean(a.argmax(1) == b.argmax(1))),
                     max_abs_diff=float(np.abs(a - b).max()) if a.size else 0.0,
                     samples=len(a),
                     reference_accuracy=reference.accuracy if reference else None)

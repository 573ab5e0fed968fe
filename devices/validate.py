"""Validate a bundle on a device and return the validation JSON (schema_version 1).

Devices:

- ``"local"``: this machine; every artifact runs in its own child process (``python -m
  edge_transfer validate --device self --artifact NAME``) with the profile's threads, so a
  crash in a native runtime becomes a failed row, and peak memory is that model's own.
- ``"self"``: in this very process (what the child runs).
- ``"ssh://user@host[:port]"``: copy the bundle, run ``edge-transfer validate --device
  local`` on the device, bring the JSON back (see :mod:`devices.ssh`).
- ``"emulated:arm64"``: the real arm64 builds of LiteRT and ONNX Runtime in a Debian arm64
  userland under qemu (:mod:`devices.emulated`; set up once with ``edge-transfer device setup
  emulated-arm64``, needs root). Each row gains ``agreement``: the arm64 outputs against the
  workstation's on the same sample (``top1`` agreement, ``max_abs_diff`` in output units);
  latency measured under emulation is labelled ``"emulated": true`` and never checked.
- ``"stand-in"``: the profile's ``stand_in`` device (e.g. ``emulated:arm64`` for the
  Raspberry Pi profiles), for when the real board is not at hand.

Not run as a doctest (it needs a bundle; tests/test_devices.py builds one):

>>> result = validate("bundles/target", profile="raspberry-pi-5")   # doctest: +SKIP
>>> [(a.name, a.status) for a in result.artifacts]                  # doctest: +SKIP
[('tflite-fp32', 'ok'), ('tflite-int8', 'ok'), ...]
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from devices.checks import budget_checks, skipped
from devices.profile import DeviceProfile, load_profile, normalize_arch
from edge_transfer import interrupts
from edge_transfer.atomic import write_bytes_atomic
from edge_transfer.bundle import Bundle, BundleArtifact, open_bundle
from edge_transfer.errors import DataError, DeviceError, UserError
from edge_transfer.records import (
    Agreement,
    DeviceInfo,
    MalformedRecord,
    SampleIds,
    ValidationResult,
    ValidationRow,
    as_dict,
)

EMULATED_ARM64 = "emulated:arm64"
STAND_IN = "stand-in"
DEFAULT_PROFILES = {"x86_64": "generic-x86-64"}


def machine_arch() -> str:
    return normalize_arch(platform.machine())


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
) -> ValidationResult:
    """Run every artifact of a bundle on ``device``; rows of pass/fail/skip per budget.

    ``outputs``: a folder where each artifact's raw outputs on the sample are saved as
    ``NAME.npy`` (float32, output units), to compare devices (local and self only).
    :func:`validate_bundle` is the same, returning the validation JSON as a dict.
    """
    if threads is not None and threads < 1:
        raise DeviceError(f"--threads must be at least 1, got {threads}")
    if device == STAND_IN:
        device = _stand_in(profile)
    if device == EMULATED_ARM64:
        return _validate_emulated(Path(bundle_dir), profile, threads, data, artifacts, timeout)
    if device.startswith("ssh://"):
        return _validate_ssh(Path(bundle_dir), device, profile, threads, data, artifacts,
                             remote_command, ssh_options, identity, connect_timeout, timeout)
    if device not in ("local", "self"):
        raise DeviceError(f"unknown device {device!r}; use local, ssh://user@host[:port], "
                          f"{EMULATED_ARM64} or {STAND_IN} (with --profile)")
    resolved = _resolve_profile(profile)
    with tempfile.TemporaryDirectory(prefix="edge-transfer-") as tmp:
        bundle = open_bundle(bundle_dir, extract_to=tmp)  # every sha256, before anything runs
        chosen = [bundle.artifact(name) for name in artifacts] or list(bundle.artifacts)
        if device == "local" and data is not None:
            _validation_data(bundle, data)  # a bad --data fails here, once, not per child
        if outputs is not None:
            Path(outputs).mkdir(parents=True, exist_ok=True)
        if device == "self":
            rows = [_validate_here(bundle, a, resolved, threads, data, outputs) for a in chosen]
        else:
            rows = [_validate_child(bundle, a, profile, resolved, threads, data, timeout,
                                    outputs) for a in chosen]
    return ValidationResult(
        device=DeviceInfo(name=device, profile=resolved.name if resolved else None,
                          arch=machine_arch(),
                          emulated=bool(resolved and resolved.arch != machine_arch())),
        bundle=str(bundle_dir), data_fingerprint=bundle.data_fingerprint, data=data,
        artifacts=tuple(rows), samples=_samples(bundle, data))


validate_bundle = as_dict(validate)


def _samples(bundle: Bundle, data: str | None) -> SampleIds | None:
    """Which samples the rows' ``predictions`` were made on: the bundle's (the run's test
    split, as its manifest says), or all of ``--data``."""
    if data is None:
        return bundle.manifest.samples
    from edge_transfer.data import load_dataset

    pre = bundle.preprocessing
    dataset = load_dataset(data, image_size=(pre.height, pre.width))
    known = {name: i for i, name in enumerate(bundle.labels)}
    remap = np.array([known.get(n, -1) for n in dataset.class_names])
    return SampleIds.of(dataset.fingerprint(), "all", np.maximum(remap[dataset.y], 0))


def _resolve_profile(profile: str | Path | DeviceProfile | None) -> DeviceProfile | None:
    if isinstance(profile, DeviceProfile):
        return profile
    if profile is not None:
        return load_profile(profile)
    default = DEFAULT_PROFILES.get(machine_arch())
    return load_profile(default) if default else None


def _base_row(artifact: BundleArtifact, reason: str | None = None) -> ValidationRow:
    """The row of an artifact that did not run (``failed``, with ``reason``)."""
    return ValidationRow(name=artifact.name, format=artifact.format,
                         precision=artifact.precision, file=artifact.file, status="failed",
                         reason=reason, bytes=artifact.bytes,
                         workstation_accuracy=artifact.workstation_accuracy,
                         workstation_predictions=artifact.workstation_predictions)


def _skipped(artifact: BundleArtifact, reason: str) -> ValidationRow:
    return dataclasses.replace(_base_row(artifact, reason), status="skipped",
                               checks=skipped(reason))


def _validate_here(
    bundle: Bundle, artifact: BundleArtifact, profile: DeviceProfile | None,
    threads: int | None, data: str | None, outputs: str | Path | None = None,
) -> ValidationRow:
    """Load and evaluate one artifact in this process."""
    from edge_transfer.runtime import EdgeModel

    reason = (profile.cannot_run(artifact.format, artifact.precision, artifact.kept_float)
              if profile else None)
    if reason:
        return _skipped(artifact, reason)
    x, y = _validation_data(bundle, data)
    try:
        model = EdgeModel.load(bundle.artifact_path(artifact),
                               threads=threads or (profile.threads if profile else None))
        evaluation = model.evaluate(x, y)
        if outputs is not None:
            _save_outputs(Path(outputs) / f"{artifact.name}.npy",
                          model.predict(x).probabilities)
    except UserError as exc:
        interrupts.check(exc)   # a runtime interrupted by a signal is not a failed row
        return _base_row(artifact, str(exc))
    row = ValidationRow.from_dict({**_base_row(artifact).to_dict(), **evaluation.to_dict(),
                                   "status": "ok"})
    if data is not None:  # other samples than the workstation's predictions were made on
        row = dataclasses.replace(row, workstation_predictions=None)
    tolerance = bundle.tolerance
    if profile and profile.accuracy_tolerance is not None:
        tolerance = profile.accuracy_tolerance
    emulated = bool(profile and profile.arch != machine_arch())
    other_data = (f"validated on {data}, not the bundle's validation sample the workstation "
                  "accuracy was measured on") if data else None
    return dataclasses.replace(
        row, checks=budget_checks(row, profile, tolerance, emulated, other_data))


def _save_outputs(path: Path, outputs: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(outputs, dtype=np.float32))
    write_bytes_atomic(path, buffer.getvalue())


def _validation_data(bundle: Bundle, data: str | None) -> tuple[np.ndarray, np.ndarray]:
    if data is None:
        return bundle.validation_arrays()
    from edge_transfer.data import load_dataset

    pre = bundle.preprocessing
    dataset = load_dataset(data, image_size=(pre.height, pre.width))
    unknown = [n for n in dataset.class_names if n not in bundle.labels]
    if unknown:
        raise DataError(f"{data} has classes {unknown} the model does not know; its classes "
                        f"are {', '.join(bundle.labels)}: give --data a dataset whose class "
                        "names are among the model's labels")
    remap = np.array([bundle.labels.index(n) for n in dataset.class_names])
    return dataset.x.read(), remap[dataset.y]


def _validate_child(
    bundle: Bundle, artifact: BundleArtifact, profile_arg: Any,
    profile: DeviceProfile | None, threads: int | None, data: str | None, timeout: float,
    outputs: str | Path | None = None,
) -> ValidationRow:
    """One artifact in a child process; a crash or hang becomes a failed row."""
    reason = (profile.cannot_run(artifact.format, artifact.precision, artifact.kept_float)
              if profile else None)
    if reason:
        return _skipped(artifact, reason)
    with tempfile.TemporaryDirectory(prefix="edge-transfer-") as tmp:
        out = Path(tmp) / "row.json"
        command = [sys.executable, "-m", "edge_transfer", "validate", str(bundle.path),
                   "--device", "self", "--artifact", artifact.name, "--json", str(out)]
        if profile is not None:
            source = profile_arg if isinstance(profile_arg, (str, Path)) else None
            if source is None:
                source = _write_profile(profile, Path(tmp))
            command += ["--profile", str(source)]
        if threads is not None:
            command += ["--threads", str(threads)]
        if data is not None:
            command += ["--data", data]
        if outputs is not None:
            command += ["--outputs", str(outputs)]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env=_child_env(), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return _base_row(artifact, f"the runtime did not finish within {timeout:.0f} s "
                                       "(killed)")
        interrupts.check_child(proc.returncode)  # Ctrl-C reached the child: stop here too
        if out.is_file():
            return ValidationResult.load(out).artifacts[0]
    reason = _death(proc)
    if proc.returncode == 2:  # a UserError in the child: the same one-line message
        raise UserError(reason)
    return _base_row(artifact, reason)


def _death(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("INFO:")]
    last = lines[-1] if lines else "no output"
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return (f"the runtime process crashed ({name}) while running this model; the file may "
                "be damaged or use an op this runtime cannot run: export it again")
    return last.removeprefix("error: ")


def _child_env() -> dict[str, str]:
    """This interpreter's environment, with the edge_transfer it imported first on the path."""
    import edge_transfer

    root = str(Path(edge_transfer.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _write_profile(profile: DeviceProfile, folder: Path) -> Path:
    lines = []
    for key, value in profile.to_dict().items():
        if key == "source" or value is None:
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    path = folder / f"{profile.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _validate_ssh(
    bundle_dir: Path, device: str, profile: str | Path | DeviceProfile | None,
    threads: int | None, data: str | None, artifacts: Sequence[str], remote_command: str,
    ssh_options: Sequence[str], identity: str | None, connect_timeout: int, timeout: float,
) -> ValidationResult:
    from devices.ssh import SSHTarget, validate_over_ssh

    target = SSHTarget.parse(device, ssh_options, identity, connect_timeout)
    with tempfile.TemporaryDirectory(prefix="edge-transfer-") as tmp:
        bundle = open_bundle(bundle_dir, extract_to=Path(tmp) / "bundle")  # verify before sending
        files: list[Path] = []
        args: list[str] = []
        if isinstance(profile, DeviceProfile):
            files.append(_write_profile(profile, Path(tmp)))
        elif profile is not None and Path(profile).is_file():
            files.append(Path(profile))
        if files:
            args += ["--profile", "{remote}/" + files[0].name]
        elif isinstance(profile, (str, Path)):
            args += ["--profile", load_profile(profile).name]
        if threads is not None:
            args += ["--threads", str(threads)]
        if data is not None:
            if Path(data).exists():
                files.append(Path(data))
                args += ["--data", "{remote}/" + Path(data).name]
            else:
                args += ["--data", data]
        for name in artifacts:
            args += ["--artifact", name]
        result = validate_over_ssh(target, bundle.path, remote_command, args, files, timeout)
    return dataclasses.replace(result, device=dataclasses.replace(result.device, name=target.url),
                               bundle=str(bundle_dir))


# ------------------------------------------------------------------ stand-ins and emulation


def _stand_in(profile: str | Path | DeviceProfile | None) -> str:
    """The device a profile names as its stand-in (``stand_in = "emulated:arm64"``)."""
    from devices.profile import list_profiles

    named = [n for n in list_profiles() if load_profile(n).stand_in]
    if profile is None:
        raise DeviceError(f"--device {STAND_IN} runs the profile's stand-in device: pass "
                          f"--profile NAME, one of {', '.join(named)}")
    resolved = _resolve_profile(profile)
    assert resolved is not None
    if resolved.stand_in is None:
        raise DeviceError(f"profile {resolved.name} names no stand-in device; use a profile "
                          f"that does ({', '.join(named)}) or add stand_in = "
                          f"\"{EMULATED_ARM64}\" to it")
    return resolved.stand_in


LATENCY_EMULATED = ("measured under qemu emulation on the workstation, not on the device: "
                    "never checked against a latency budget; run on the device "
                    "(--device ssh://...) to check it")


def _validate_emulated(
    bundle_dir: Path, profile: str | Path | DeviceProfile | None, threads: int | None,
    data: str | None, artifacts: Sequence[str], timeout: float,
) -> ValidationResult:
    """Validate in the arm64 userland and on this workstation, on the same sample; compare."""
    from devices import emulated

    userland = emulated.Userland.at()
    emulated.check_ready(userland)  # not set up, stale or not root: exit 2 with the fix
    resolved = _resolve_profile(profile) if profile is not None else None
    with tempfile.TemporaryDirectory(prefix="edge-transfer-arm64-") as name:
        tmp = Path(name)
        bundle = open_bundle(bundle_dir, extract_to=tmp / "bundle")  # every sha256 first
        for artifact in artifacts:
            bundle.artifact(artifact)
        if data is not None:
            _validation_data(bundle, data)  # a bad --data fails here, on the host, once
        options: list[str] = ["--outputs", "/mnt/out/outputs"]
        binds: dict[str | os.PathLike[str], str] = {}
        if resolved is not None:
            binds[_write_profile(resolved, tmp)] = "/mnt/profile.toml"
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
        reference = validate(bundle.path, "local", resolved, threads, data,
                             artifacts=artifacts, timeout=timeout, outputs=tmp / "workstation")
        try:
            result = ValidationResult.from_dict(emulated.validate_in_userland(
                bundle.path, options, userland=userland, binds=binds, out_dir=tmp / "arm64",
                timeout=timeout))
        except MalformedRecord as exc:
            raise DeviceError(f"the arm64 userland returned a malformed validation result "
                              f"({exc}); set it up again: `edge-transfer device setup "
                              "emulated-arm64`") from exc
        rows = tuple(dataclasses.replace(
            _label_emulated(row),
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
    return dataclasses.replace(result, device=device, bundle=str(bundle_dir), data=data,
                               artifacts=rows)


def _label_emulated(row: ValidationRow) -> ValidationRow:
    """Latency measured under emulation: labelled, its check a skip."""
    checks = tuple(
        dataclasses.replace(c, status="skip", emulated=True,
                            detail=LATENCY_EMULATED if row.ok else c.detail)
        if c.name == "latency" else c for c in row.checks)
    return dataclasses.replace(row, emulated=True, checks=checks)


def agreement(ours: Path, theirs: Path, reference: ValidationRow | None) -> Agreement | None:
    """Top-1 agreement and the largest output difference of two devices' saved outputs.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> np.save(d / "a.npy", np.array([[0.9, 0.1], [0.4, 0.6]], np.float32))
    >>> np.save(d / "b.npy", np.array([[0.8, 0.2], [0.6, 0.4]], np.float32))
    >>> a = agreement(d / "a.npy", d / "b.npy", None)
    >>> a.top1, round(a.max_abs_diff, 3), a.samples
    (0.5, 0.2, 2)
    """
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

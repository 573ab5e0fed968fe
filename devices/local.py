"""The local device: this machine, every artifact of a bundle in a child process of its own
(``python -m edge_transfer validate --device self --artifact NAME``) with the profile's
threads, so a crash in a native runtime becomes a failed row and peak memory is that model's
own; or, as ``--device self``, all in this very process (what each child runs).

Not run as a doctest (it needs a bundle; tests/test_devices.py builds one):

>>> result = validate_local("bundles/target", "local", "generic-x86-64")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from devices.in_process import cannot_run, failed_row, skipped_row, validate_here
from devices.profile import DeviceProfile, machine_arch, resolve_profile, write_profile
from devices.sample import sample_ids, validation_data
from edge_transfer.core import interrupts
from edge_transfer.core.errors import UserError
from edge_transfer.core.records.device import DeviceInfo
from edge_transfer.core.records.validation import ValidationResult, ValidationRow
from edge_transfer.deploy.bundle import Bundle, BundleArtifact, open_bundle


def validate_local(
    bundle_dir: str | Path,
    device: str,
    profile: str | Path | DeviceProfile | None,
    threads: int | None,
    data: str | None,
    artifacts: Sequence[str] = (),
    timeout: float = 1800,
    outputs: str | Path | None = None,
) -> ValidationResult:
    """Validate on this machine: ``device`` is ``"local"`` (a child process per artifact) or
    ``"self"`` (this process)."""
    resolved = resolve_profile(profile)
    with tempfile.TemporaryDirectory(prefix="edge-transfer-") as tmp:
        bundle = open_bundle(bundle_dir, extract_to=tmp)  # every sha256, before anything runs
        chosen = [bundle.artifact(name) for name in artifacts] or list(bundle.manifest.artifacts)
        if device == "local" and data is not None:
            validation_data(bundle, data)  # a bad --data fails here, once, not per child
        if outputs is not None:
            Path(outputs).mkdir(parents=True, exist_ok=True)
        if device == "self":
            rows = [validate_here(bundle, a, resolved, threads, data, outputs) for a in chosen]
        else:
            rows = [_validate_child(bundle, a, profile, resolved, threads, data, timeout,
                                    outputs) for a in chosen]
    return ValidationResult(
        device=DeviceInfo(name=device, profile=resolved.name if resolved else None,
                          arch=machine_arch(),
                          emulated=bool(resolved and resolved.arch != machine_arch())),
        bundle=str(bundle_dir), data_fingerprint=bundle.manifest.data_fingerprint, data=data,
        artifacts=tuple(rows), samples=sample_ids(bundle, data))


def _validate_child(
    bundle: Bundle, artifact: BundleArtifact, profile_arg: str | Path | DeviceProfile | None,
    profile: DeviceProfile | None, threads: int | None, data: str | None, timeout: float,
    outputs: str | Path | None = None,
) -> ValidationRow:
    """One artifact in a child process; a crash or hang becomes a failed row."""
    reason = cannot_run(profile, artifact)
    if reason:
        return skipped_row(artifact, reason)
    with tempfile.TemporaryDirectory(prefix="edge-transfer-") as tmp:
        out = Path(tmp) / "row.json"
        command = [sys.executable, "-m", "edge_transfer", "validate", str(bundle.path),
                   "--device", "self", "--artifact", artifact.name, "--json", str(out)]
        if profile is not None:
            source = profile_arg if isinstance(profile_arg, (str, Path)) else None
            if source is None:
                source = write_profile(profile, Path(tmp))
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
            return failed_row(artifact, f"the runtime did not finish within {timeout:.0f} s "
                                        "(killed)")
        interrupts.check_child(proc.returncode)  # Ctrl-C reached the child: stop here too
        if out.is_file():
            return ValidationResult.load(out).artifacts[0]
    reason = _death(proc)
    if proc.returncode == 2:  # a UserError in the child: the same one-line message
        raise UserError(reason)
    return failed_row(artifact, reason)


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

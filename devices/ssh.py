"""An SSH device: copy a bundle with scp, run the device-side CLI there, bring the JSON back.

Every command is an argument list (no local shell); the one string the remote shell sees
is built with :func:`shlex.join`. The user's keys, ``~/.ssh/config`` and known_hosts apply;
host-key checking is never turned off (options that try are refused).

>>> SSHTarget.parse("ssh://pi@raspberrypi.local:2222").destination
'pi@raspberrypi.local'
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from devices.profile import DeviceProfile, load_profile, write_profile
from edge_transfer.core.errors import DeviceError
from edge_transfer.core.records.validation import ValidationResult
from edge_transfer.deploy.bundle import open_bundle

_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SSHTarget:
    """``ssh://[user@]host[:port]`` plus how to reach it."""

    host: str
    user: str | None = None
    port: int | None = None
    options: tuple[str, ...] = ()
    identity: str | None = None
    connect_timeout: int = 10

    @classmethod
    def parse(
        cls, url: str, options: Sequence[str] = (), identity: str | None = None,
        connect_timeout: int = 10,
    ) -> SSHTarget:
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/"):
            raise DeviceError(f"bad device {url!r}; write ssh://user@host or ssh://user@host:22")
        try:
            port = parts.port
        except ValueError as exc:
            raise DeviceError(f"bad port in {url!r}: {exc}") from exc
        host, user = parts.hostname, parts.username
        if not _HOST.match(host) or (user is not None and not _USER.match(user)):
            raise DeviceError(f"bad host or user name in {url!r}")
        for option in options:
            _check_option(option)
        return cls(host, user, port, tuple(options), identity, connect_timeout)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def url(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"ssh://{self.destination}{port}"

    def _common(self) -> list[str]:
        args = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}"]
        for option in self.options:
            args += ["-o", option]
        if not any(o.strip().lower().startswith("stricthostkeychecking") for o in self.options):
            # ssh keeps the first value it sees: this overrides a ~/.ssh/config that turns
            # checking off, while a user's own -o StrictHostKeyChecking=accept-new still wins.
            args += ["-o", "StrictHostKeyChecking=yes"]
        if self.identity:
            args += ["-i", self.identity]
        return args

    def ssh(self, remote: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run ``remote`` (an argument list, quoted for the remote shell) on the device."""
        port = ["-p", str(self.port)] if self.port else []
        command = ["ssh", *self._common(), *port, "--", self.destination, shlex.join(remote)]
        return self._run(command, timeout)

    def copy_to(self, sources: Sequence[Path], remote_dir: str, timeout: float) -> None:
        port = ["-P", str(self.port)] if self.port else []
        command = ["scp", "-q", "-r", *self._common(), *port, "--",
                   *[str(s) for s in sources], f"{self.destination}:{remote_dir}/"]
        self._check(self._run(command, timeout), "copying the bundle")

    def copy_from(self, remote_path: str, local: Path, timeout: float) -> None:
        port = ["-P", str(self.port)] if self.port else []
        command = ["scp", "-q", *self._common(), *port, "--",
                   f"{self.destination}:{remote_path}", str(local)]
        self._check(self._run(command, timeout), "fetching the results")

    def _run(self, command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise DeviceError(f"{command[0]} is not installed; install OpenSSH's client") from exc
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(f"{self.url} did not answer within {timeout:.0f} s; check the "
                              "device, or raise the timeout") from exc

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode == 0:
            return
        raise DeviceError(f"{self.url}: {what} failed: {self.explain(proc)}")

    def explain(self, proc: subprocess.CompletedProcess[str]) -> str:
        """A one-line reason and fix for a failed ssh/scp call."""
        err = proc.stderr.strip()
        last = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
        low = err.lower()
        if "host key verification failed" in low or "remote host identification" in low:
            return (f"{last}; the host key of {self.host} is unknown or changed: verify it, then "
                    f"add it to known_hosts (ssh-keyscan -p {self.port or 22} {self.host})")
        if "timed out" in low:
            return (f"{last}; no answer within {self.connect_timeout} s: check the address, "
                    "the port and that sshd runs on the device")
        if "connection refused" in low:
            return f"{last}; nothing listens on that port: start sshd or fix the port"
        if "permission denied" in low:
            return f"{last}; the device refused your key: pass --identity or set up ~/.ssh/config"
        return last


def _check_option(option: str) -> None:
    """``Key=value`` / ``Key value`` for ssh -o; host-key checking cannot be turned off."""
    key, value = ([*re.split(r"\s*=\s*|\s+", option.strip(), maxsplit=1), ""])[:2]
    if not re.fullmatch(r"[A-Za-z]+", key):
        raise DeviceError(f"bad ssh option {option!r}; write it as Key=value, e.g. Port=2222")
    checks_off = (
        (key.lower() == "stricthostkeychecking"
         and value.lower() not in ("yes", "ask", "accept-new", "true"))
        or (key.lower() == "userknownhostsfile" and value.strip() == "/dev/null")
    )
    if checks_off:
        raise DeviceError("refusing to turn host-key checking off; add the device's key "
                          "to known_hosts (ssh-keyscan, after checking it) instead")


def validate_ssh(
    bundle_dir: Path, device: str, profile: str | Path | DeviceProfile | None,
    threads: int | None, data: str | None, artifacts: Sequence[str], remote_command: str,
    ssh_options: Sequence[str], identity: str | None, connect_timeout: int, timeout: float,
    clients: Sequence[str] = (),
) -> ValidationResult:
    """Validate the bundle on ``device`` (``ssh://user@host[:port]``): the profile and a
    ``--data`` file travel with it; the rows are the device's, its name the URL."""
    target = SSHTarget.parse(device, ssh_options, identity, connect_timeout)
    with tempfile.TemporaryDirectory(prefix="edge-transfer-") as tmp:
        bundle = open_bundle(bundle_dir, extract_to=Path(tmp) / "bundle")  # verify before sending
        files: list[Path] = []
        args: list[str] = []
        if isinstance(profile, DeviceProfile):
            files.append(write_profile(profile, Path(tmp)))
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
        for client in clients:  # run on the device, in the clients installed there
            args += ["--client", client]
        result = validate_over_ssh(target, bundle.path, remote_command, args, files, timeout)
    return dataclasses.replace(result, device=dataclasses.replace(result.device, name=target.url),
                               bundle=str(bundle_dir))


def validate_over_ssh(
    target: SSHTarget,
    bundle_dir: Path,
    remote_command: str,
    extra_args: list[str],
    extra_files: Sequence[Path] = (),
    timeout: float = 1800,
) -> ValidationResult:
    """Copy ``bundle_dir`` (+ ``extra_files``), run ``REMOTE validate`` there, return its result.

    ``extra_args`` may name an extra file as ``{remote}/<name>``; ``{remote}`` is replaced by
    the remote temporary folder.
    """
    made = target.ssh(["mktemp", "-d", "-t", "edge-transfer.XXXXXX"], timeout=60)
    target._check(made, "creating a folder on the device")
    remote_dir = made.stdout.strip().splitlines()[-1]
    try:
        target.copy_to([bundle_dir, *extra_files], remote_dir, timeout)
        result = f"{remote_dir}/validation.json"
        args = [a.replace("{remote}", remote_dir) for a in extra_args]
        command = [*shlex.split(remote_command), "validate", f"{remote_dir}/{bundle_dir.name}",
                   "--device", "local", "--json", result, *args]
        proc = target.ssh(command, timeout)
        if proc.returncode not in (0, 1):
            raise DeviceError(f"{target.url}: `{' '.join(command[:2])} validate` failed: "
                              f"{target.explain(proc)}; check --remote-command and that "
                              "edge-transfer is installed on the device")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "validation.json"
            target.copy_from(result, local, timeout)
            return ValidationResult.load(
                local, error=DeviceError,
                fix=f"{target.url} returned no usable validation result: install the same "
                    "edge-transfer version on the device")
    finally:
        target.ssh(["rm", "-rf", "--", remote_dir], timeout=60)

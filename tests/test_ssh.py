"""A real OpenSSH server on 127.0.0.1 is a device: a bundle validated over SSH end to end."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO_ROOT, find_tool, run_cli
from runtime_export import CORE

from devices import validate_bundle
from edge_transfer.core.errors import DeviceError

# Skipped with the install command where sshd is missing (conftest.require_system).
pytestmark = pytest.mark.ssh
REMOTE = f"env PYTHONPATH={REPO_ROOT} {sys.executable} -m edge_transfer"


@dataclass(frozen=True)
class Server:
    port: int
    user: str
    key: Path
    known_hosts: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    @property
    def options(self) -> list[str]:
        return [f"UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=yes",
                "GlobalKnownHostsFile=/dev/null", "IdentitiesOnly=yes"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("sshd")
    keygen(folder / "host_key")
    keygen(folder / "client_key")
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:  # sshd started by root wants its privilege separation folder
        Path("/run/sshd").mkdir(exist_ok=True)
    log = folder / "sshd.log"
    server = subprocess.Popen([str(find_tool("sshd")), "-D", "-e", "-f", str(config)],
                              stdout=subprocess.DEVNULL, stderr=open(log, "w"))  # noqa: SIM115
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"sshd did not start: {log.read_text()}")
            time.sleep(0.1)
    host_key = (folder / "host_key.pub").read_text().split()[:2]
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_key)}\n")
    try:
        yield Server(port, getpass.getuser(), folder / "client_key", known_hosts)
    finally:
        server.terminate()
        server.wait(timeout=10)



def test_bundle_validated_over_ssh_end_to_end(sshd: Server, digits_bundle: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "ssh.json"
    options = [arg for option in sshd.options for arg in ("--ssh-option", option)]
    proc = run_cli("validate", str(digits_bundle), "--device", sshd.url, "--identity",
                   str(sshd.key), *options, "--remote-command", REMOTE,
                   "--profile", "generic-x86-64", "--threads", "1", "--json", str(out),
                   *(arg for name in CORE for arg in ("--artifact", name)))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["device"]["name"] == sshd.url
    assert result["device"]["profile"] == "generic-x86-64"
    assert result["bundle"] == str(digits_bundle)
    assert [r["name"] for r in result["artifacts"]] == list(CORE)
    for row in result["artifacts"]:
        assert row["status"] == "ok", row
        assert abs(row["accuracy"] - row["workstation_accuracy"]) <= 0.005
        assert all(c["status"] == "pass" for c in row["checks"]), row["checks"]
    assert sshd.url in proc.stdout


def test_unknown_host_key_is_refused_with_the_fix(sshd: Server, digits_bundle: Path,
                                                  tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(DeviceError, match=r"unknown or changed.*known_hosts"):
        validate_bundle(digits_bundle, device=sshd.url, identity=str(sshd.key),
                        ssh_options=[f"UserKnownHostsFile={empty}",
                                     "StrictHostKeyChecking=yes",
                                     "GlobalKnownHostsFile=/dev/null"],
                        remote_command=REMOTE)
    with pytest.raises(DeviceError, match="refusing to turn host-key checking off"):
        validate_bundle(digits_bundle, device=sshd.url, ssh_options=["StrictHostKeyChecking no"])


def test_unreachable_device_and_wrong_remote_command(sshd: Server, digits_bundle: Path) -> None:
    closed = free_port()
    with pytest.raises(DeviceError, match="nothing listens on that port"):
        validate_bundle(digits_bundle, device=f"ssh://{sshd.user}@127.0.0.1:{closed}",
                        identity=str(sshd.key), ssh_options=sshd.options, connect_timeout=5)
    with pytest.raises(DeviceError, match="check --remote-command"):
        validate_bundle(digits_bundle, device=sshd.url, identity=str(sshd.key),
                        ssh_options=sshd.options, remote_command="no-such-edge-transfer")

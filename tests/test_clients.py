"""Deploy clients as part of validation: a bundle's files run by MediaPipe Tasks, a bare LiteRT
interpreter, a bare ONNX Runtime session and OpenVINO's Model API, each given only the file,
compared with our runtime on the same images; and the README's snippet of each client, run
exactly as written.

The clients live in their own Python (``.venv-clients`` or ``$EDGE_TRANSFER_CLIENTS_PYTHON``):
tests marked ``clients`` skip without it, with the install command (see conftest).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, run_cli
from runtime_export import CORE, bundle_folder
from test_ssh import REMOTE, Server, sshd  # noqa: F401 (sshd: the SSH device fixture)

from devices.clients import CLIENTS, PYTHON_ENV, clients_python, parse_clients
from edge_transfer.core.errors import DeviceError
from edge_transfer.core.records import ClientRow, Report, ReportRow

MIN_AGREEMENT = 0.99


@pytest.fixture(scope="module")
def digits_bundle(digits_run: Path) -> Path:
    return bundle_folder(digits_run)


def validate_json(bundle: Path, out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                                 dict]:
    proc = run_cli("validate", str(bundle), "--threads", "1", "--json", str(out), *args)
    return proc, json.loads(out.read_text()) if out.exists() else {}


# --------------------------------------------------------------------- without the clients


def test_client_names_are_checked_before_anything_runs(digits_bundle: Path) -> None:
    assert parse_clients(["all"]) == tuple(CLIENTS)
    with pytest.raises(DeviceError, match="unknown client 'tflite'; choose from mediapipe"):
        parse_clients(["mediapipe,tflite"])
    proc = run_cli("validate", str(digits_bundle), "--client", "tensorrt")
    assert proc.returncode == 2 and "unknown client 'tensorrt'" in proc.stderr, proc.stderr


def test_a_client_not_installed_is_a_row_naming_the_install(digits_bundle: Path,
                                                            tmp_path: Path) -> None:
    """This interpreter (the workstation's venv) has no MediaPipe and no Model API: a row per
    file saying so, a warning with the pip command, and no failure."""
    python = sys.executable
    proc, result = validate_json(digits_bundle, tmp_path / "v.json", "--artifact",
                                 "tflite-fp32", "--client", "mediapipe",
                                 "--client-python", python)
    assert proc.returncode == 0, proc.stderr
    rows = result["clients"]
    assert [(r["artifact"], r["client"], r["status"]) for r in rows] == [
        ("tflite-fp32", "mediapipe", "missing")]
    assert "pip install mediapipe" in rows[0]["reason"] and python in rows[0]["reason"]
    assert "pip install mediapipe" in proc.stderr


def test_check_fails_when_a_file_no_longer_runs_in_a_client() -> None:
    from edge_transfer.report.gate import check

    def report(status: str, reason: str | None = None) -> Report:
        row = ReportRow(name="tflite-int8", status="ok", clients=(
            ClientRow("tflite-int8", "mediapipe", status, reason),
            ClientRow("tflite-int8", "litert", "refused", "no labels")))
        return Report(data_fingerprint="f", artifacts=(row,))

    assert check(report("ok"), report("ok")).ok
    result = check(report("refused", "Input tensor has type float32: it requires "
                                     "NormalizationOptions"), report("ok"))
    assert [f.criterion for f in result.regressions] == ["client:mediapipe"]
    assert "ran in mediapipe in the baseline, refused now: Input tensor" in (
        result.regressions[0].message)
    gone = check(Report(data_fingerprint="f", artifacts=(
        ReportRow(name="tflite-int8", status="ok"),)), report("ok"))
    assert "not run in mediapipe now: validate with --client mediapipe" in (
        gone.regressions[0].message)
    # litert refused in the baseline: nothing to hold the report to
    assert check(report("ok"), report("refused")).ok


# --------------------------------------------------------------------- with the clients


@pytest.mark.clients
def test_every_file_runs_in_every_client_and_agrees_with_our_runtime(
        digits_bundle: Path, digits_run: Path, tmp_path: Path) -> None:
    """fp32 and int8, TFLite and ONNX: each client given only the file agrees with our
    runtime on >= 99% of the bundle's images; the report gets the file x client table."""
    out = tmp_path / "v.json"
    only = [arg for name in CORE for arg in ("--artifact", name)]
    proc, result = validate_json(digits_bundle, out, *only, "--client", "all")
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["artifact"], r["client"]): r for r in result["clients"]}
    expected = {(name, c.name) for name in CORE for c in CLIENTS.values()
                if name.split("-")[0] in c.formats}
    assert set(rows) == expected
    samples = result["artifacts"][0]["samples"]
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row["reason"])
        assert row["samples"] == samples > 100
        assert row["agreement"] >= MIN_AGREEMENT, (key, row)
        assert row["vs_runtime"]["p_value"] > 0.05, (key, row)
    assert "deploy clients" in proc.stdout and "agrees" in proc.stdout

    from runtime_export import export_folder

    report_dir = tmp_path / "report"
    proc = run_cli("report", str(digits_run), "--export", str(export_folder(digits_run)),
                   "--validation", str(out), "--out", str(report_dir))
    assert proc.returncode == 0, proc.stderr
    markdown = (report_dir / "report.md").read_text()
    assert "## Deploy clients" in markdown
    assert re.search(r"\| tflite-int8 \| agrees \d+\.\d% .*\| agrees", markdown), markdown


@pytest.mark.clients
def test_a_file_a_client_refuses_is_a_row_with_the_clients_reason(
        digits_bundle: Path, tmp_path: Path) -> None:
    """An ONNX file without the Model API's keys: OpenVINO refuses it in its own words, the
    bare session too; the validation fails (exit 1) and every other row is still there."""
    import onnx

    from edge_transfer.deploy.bundle import sha256_file

    bundle = tmp_path / "bundle"
    shutil.copytree(digits_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["name"] == "onnx-fp32")
    model = onnx.load(bundle / entry["file"])
    keep = [p for p in model.metadata_props if not p.key.startswith("model_info")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.save(model, bundle / entry["file"])
    entry["sha256"], entry["bytes"] = sha256_file(bundle / entry["file"]), (
        bundle / entry["file"]).stat().st_size
    (bundle / "manifest.json").write_text(json.dumps(manifest))

    proc, result = validate_json(bundle, tmp_path / "v.json", "--artifact", "onnx-fp32",
                                 "--artifact", "onnx-int8", "--client", "openvino,onnxruntime")
    assert proc.returncode == 1, proc.stderr
    rows = {(r["artifact"], r["client"]): r for r in result["clients"]}
    assert rows["onnx-fp32", "onnxruntime"]["status"] == "refused"
    assert "model_info labels" in rows["onnx-fp32", "onnxruntime"]["reason"]
    assert rows["onnx-fp32", "openvino"]["status"] == "refused"
    assert rows["onnx-fp32", "openvino"]["reason"]
    assert rows["onnx-int8", "openvino"]["status"] == "ok"
    assert "onnx-fp32 in openvino" in proc.stderr


# --------------------------------------------------------------------- the README's snippets


def readme_snippets() -> dict[str, str]:
    """The README's ```python blocks under "Run a bundle's file in a deploy client", by the
    client named in the comment on their first line."""
    text = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(# (\w+):.*?\n.*?)```", text, flags=re.S)
    return {client: code for code, client in blocks if client in CLIENTS}


def test_the_readme_has_a_snippet_per_client() -> None:
    assert sorted(readme_snippets()) == sorted(CLIENTS)


@pytest.mark.clients
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_the_readme_snippet_runs_a_bundle_file(client: str, digits_bundle: Path,
                                               tmp_path: Path) -> None:
    """The README's snippet, exactly, in the clients' Python, on a bundle file and a PNG:
    it prints our runtime's label for that image."""
    from PIL import Image

    from edge_transfer.deploy.bundle import open_bundle
    from edge_transfer.runtime import EdgeModel

    bundle = open_bundle(digits_bundle)
    fmt = CLIENTS[client].formats[0]
    artifact = bundle.artifact(f"{fmt}-fp32")
    shutil.copy(bundle.artifact_path(artifact), tmp_path / f"model.{fmt}")
    x, _ = bundle.validation_arrays()
    image = x[3] if x.shape[-1] == 3 else np.repeat(x[3].reshape(*x.shape[1:3], 1), 3, -1)
    Image.fromarray(image.astype(np.uint8)).save(tmp_path / "image.png")
    expected = EdgeModel.load(tmp_path / f"model.{fmt}").predict(image[None]).labels[0]
    code = readme_snippets()[client]
    proc = subprocess.run([clients_python(), "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == expected


# --------------------------------------------------------------------- other devices


@pytest.mark.ssh
@pytest.mark.clients
def test_the_clients_run_on_the_ssh_device(sshd: Server, digits_bundle: Path,  # noqa: F811
                                           tmp_path: Path) -> None:
    """Over SSH the clients run on the device (here: the same machine, its clients' Python
    named by the device's environment), and their rows come back with the validation."""
    out = tmp_path / "ssh.json"
    options = [arg for option in sshd.options for arg in ("--ssh-option", option)]
    remote = f"env {PYTHON_ENV}={clients_python()} {REMOTE}"
    proc = run_cli("validate", str(digits_bundle), "--device", sshd.url, "--identity",
                   str(sshd.key), *options, "--remote-command", remote, "--threads", "1",
                   "--artifact", "tflite-int8", "--artifact", "onnx-int8", "--client", "all",
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["device"]["name"] == sshd.url
    rows = {(r["artifact"], r["client"]): r for r in result["clients"]}
    assert set(rows) == {("tflite-int8", "mediapipe"), ("tflite-int8", "litert"),
                         ("onnx-int8", "onnxruntime"), ("onnx-int8", "openvino")}
    for key, row in rows.items():
        assert row["status"] == "ok" and row["agreement"] >= MIN_AGREEMENT, (key, row)


@pytest.mark.slow
@pytest.mark.emulated
def test_the_clients_run_on_emulated_arm64(digits_bundle: Path, tmp_path: Path) -> None:
    """The arm64 wheels of all four clients in the userland (setup --clients): the bare LiteRT
    and ONNX Runtime scripts agree with the arm64 runtime on the same images; MediaPipe and
    OpenVINO are rows either way (seen: MediaPipe stops at tcmalloc's CPU count, OpenVINO's CPU
    plugin dies of SIGSEGV under qemu-user), never a crash of the validation. The libraries
    MediaPipe links (libEGL, libGLESv2: "libEGL.so.1: cannot open shared object file" in the
    minimal Debian) are installed by the clients' setup."""
    from devices import emulated
    from devices.emulated.clients import SYSTEM_PACKAGES, setup_clients

    userland = emulated.setup_emulated_arm64(progress=lambda line: print(f"setup: {line}"))
    versions = setup_clients(userland, progress=lambda line: print(f"setup: {line}"))
    assert set(versions) >= {"mediapipe", "openvino", "openvino-model-api"}
    for library in SYSTEM_PACKAGES.values():
        assert (userland.rootfs / "usr/lib/aarch64-linux-gnu" / library).exists(), library
    out = tmp_path / "arm64.json"
    proc = run_cli("validate", str(digits_bundle), "--device", "emulated:arm64", "--threads",
                   "1", "--artifact", "tflite-int8", "--artifact", "onnx-fp32", "--client",
                   "all", "--json", str(out), timeout=3600)
    print(proc.stdout)
    assert proc.returncode in (0, 1) and out.exists(), proc.stderr
    result = json.loads(out.read_text())
    assert result["device"]["arch"] == "aarch64" and result["device"]["emulated"] is True
    rows = {(r["artifact"], r["client"]): r for r in result["clients"]}
    assert set(rows) == {("tflite-int8", "mediapipe"), ("tflite-int8", "litert"),
                         ("onnx-fp32", "onnxruntime"), ("onnx-fp32", "openvino")}
    for key in (("tflite-int8", "litert"), ("onnx-fp32", "onnxruntime")):
        assert rows[key]["status"] == "ok", rows[key]
        assert rows[key]["agreement"] >= MIN_AGREEMENT, rows[key]
    for key in (("tflite-int8", "mediapipe"), ("onnx-fp32", "openvino")):
        row = rows[key]
        assert row["status"] == "ok" or (row["status"] == "refused" and row["reason"]), row
        assert "cannot open shared object file" not in (row["reason"] or ""), row
    refused = any(r["status"] == "refused" for r in rows.values())
    assert proc.returncode == (1 if refused else 0), proc.stderr

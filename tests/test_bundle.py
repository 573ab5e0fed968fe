"""Deploy bundles: manifest per the contract, sha256 verified before anything runs, safe tars."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main
from runtime_export import export_folder, ok_names

from edge_transfer.core.errors import BundleError
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.deploy.bundle import create_bundle, open_bundle
from edge_transfer.train.runs import Run


def test_bundle_cli_writes_manifest_sample_and_tar(digits_run: Path, tmp_path: Path) -> None:
    export_dir = export_folder(digits_run)
    out = tmp_path / "bundle"
    proc = run_main("bundle", str(digits_run), "--out", str(out), "--tar",
                   "--export-dir", str(export_dir))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    run = Run.open(digits_run)
    assert manifest["schema_version"] == 1 and manifest["tolerance"] == 0.005
    assert manifest["labels"] == list(run.labels)
    assert Preprocessing.from_dict(manifest["preprocessing"]) == run.preprocessing
    assert manifest["data_fingerprint"] == run.data_fingerprint
    names = [a["name"] for a in manifest["artifacts"]]
    assert names == ok_names(export_dir)  # every status-ok artifact, in export order
    for artifact in manifest["artifacts"]:
        data = (out / artifact["file"]).read_bytes()
        assert artifact["sha256"] == hashlib.sha256(data).hexdigest()
        assert artifact["bytes"] == len(data)
        assert artifact["workstation_accuracy"] > 0.9
    # The sample is the test split export checked: same samples, same per-sample predictions.
    export = json.loads((export_dir / "export.json").read_text())
    assert manifest["samples"] == export["samples"]
    checks = {a["name"]: a["check"]["predictions"] for a in export["artifacts"]}
    for artifact in manifest["artifacts"]:
        assert artifact["workstation_predictions"] == checks[artifact["name"]], artifact["name"]
    with np.load(out / manifest["validation_sample"]) as sample:
        assert sample["x"].dtype == np.uint8
        assert np.array_equal(sample["x"], run.splits.test.x)
        assert np.array_equal(sample["y"], run.splits.test.y)
    archive = tmp_path / "bundle.tar.gz"
    assert f"wrote {archive}" in proc.stdout
    opened = open_bundle(archive, extract_to=tmp_path / "unpacked")
    assert [a.name for a in opened.manifest.artifacts] == names
    assert opened.path.is_relative_to(tmp_path / "unpacked")
    again = create_bundle(digits_run, out, export_dir=export_dir)  # an older one is replaced
    assert open_bundle(again).manifest.labels == run.labels


@pytest.mark.parametrize("victim", ["model-int8.tflite", "validation.npz"])
def test_file_not_matching_its_sha256_is_refused(tiny_bundle: Path, tmp_path: Path,
                                                 victim: str) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    data = bytearray((bundle / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / victim).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its sha256"):
        open_bundle(bundle)
    proc = run_main("validate", str(bundle))
    assert proc.returncode == 2
    assert "does not match its sha256" in proc.stderr and "nothing was run" in proc.stderr


def test_unknown_schema_and_missing_files_are_refused(tiny_bundle: Path,
                                                      tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(BundleError, match="schema_version 99"):
        open_bundle(bundle)
    evil = {**manifest, "artifacts": [{**manifest["artifacts"][0], "file": "../x.tflite"}]}
    (bundle / "manifest.json").write_text(json.dumps(evil))
    with pytest.raises(BundleError, match="not a plain file name"):
        open_bundle(bundle)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (bundle / "model-fp32.onnx").unlink()
    with pytest.raises(BundleError, match="missing; copy the whole bundle again"):
        open_bundle(bundle)
    with pytest.raises(BundleError, match="does not exist"):
        open_bundle(tmp_path / "nowhere")


def evil_archive(path: Path, tiny_bundle: Path, entry: tarfile.TarInfo,
                 payload: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(tiny_bundle.iterdir()):
            tar.add(file, arcname=f"bundle/{file.name}")
        tar.addfile(entry, io.BytesIO(payload) if entry.isfile() else None)
    return path


@pytest.mark.parametrize("name", ["../escaped.txt", "bundle/../../escaped.txt",
                                  "/tmp/escaped-absolute.txt"])
def test_tar_entry_leaving_the_folder_is_refused(tiny_bundle: Path, tmp_path: Path,
                                                 name: str) -> None:
    entry = tarfile.TarInfo(name)
    entry.size = 1
    archive = evil_archive(tmp_path / "evil.tar.gz", tiny_bundle, entry)
    dest = tmp_path / "a" / "b"
    with pytest.raises(BundleError, match="leaves the bundle folder"):
        open_bundle(archive, extract_to=dest)
    assert not list(tmp_path.rglob("escaped*"))
    assert not Path("/tmp/escaped-absolute.txt").exists()
    assert not dest.exists() or not any(dest.iterdir())  # nothing unpacked at all


def test_tar_links_are_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    link = tarfile.TarInfo("bundle/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = evil_archive(tmp_path / "link.tar.gz", tiny_bundle, link)
    with pytest.raises(BundleError, match="no links"):
        open_bundle(archive, extract_to=tmp_path / "out")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(BundleError, match=r"not a readable \.tar\.gz"):
        open_bundle(tmp_path / "junk.tar.gz", extract_to=tmp_path / "out2")


def test_bundle_refuses_bad_exports_and_busy_folders(digits_run: Path, tmp_path: Path) -> None:
    export_dir = export_folder(digits_run)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not empty and not an edge-transfer bundle"):
        create_bundle(digits_run, busy, export_dir=export_dir)
    assert (busy / "notes.txt").read_text() == "mine"
    (busy / "manifest.json").write_text('{"name": "my web app"}')  # someone else's manifest
    with pytest.raises(BundleError, match="not empty and not an edge-transfer bundle"):
        create_bundle(digits_run, busy, export_dir=export_dir)
    assert (busy / "notes.txt").read_text() == "mine"
    fake = tmp_path / "export"
    fake.mkdir()
    export = json.loads((export_dir / "export.json").read_text())
    for artifact in export["artifacts"]:
        artifact["status"] = "failed"
    (fake / "export.json").write_text(json.dumps(export))
    with pytest.raises(BundleError, match="no artifact with status ok"):
        create_bundle(digits_run, tmp_path / "b1", export_dir=fake)
    with pytest.raises(BundleError, match=r"export\.json is missing"):
        create_bundle(digits_run, tmp_path / "b2", export_dir=tmp_path / "nothing")
    shutil.copy(export_dir / "model-fp32.tflite", fake / "model-fp32.tflite")
    (fake / "model-fp32.tflite").write_bytes(b"changed")
    export["artifacts"][0]["status"] = "ok"
    (fake / "export.json").write_text(json.dumps(export))
    with pytest.raises(BundleError, match=r"changed since export\.json"):
        create_bundle(digits_run, tmp_path / "b3", export_dir=fake)
    assert not (tmp_path / "b3").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b")]  # staging removed

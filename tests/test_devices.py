"""Device profiles and local validation: budgets as rows, a crashing runtime cannot kill us."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _export_shared import POST_TRAINING
from conftest import REPO_ROOT, run_main

from devices import DeviceProfile, list_profiles, load_profile, validate_bundle
from edge_transfer.core.errors import DeviceError
from edge_transfer.core.interrupts import Interrupted

# The shipped profiles: one TOML file each; adding one needs no edit here.
PROFILES = sorted(p.stem for p in (REPO_ROOT / "devices" / "profiles").glob("*.toml"))
MB = 1024 * 1024
ROW_KEYS = {"name", "format", "precision", "status", "reason", "bytes", "samples", "accuracy",
            "workstation_accuracy", "per_class_accuracy", "confusion_matrix", "latency_ms",
            "throughput_fps", "peak_memory_mb", "checks", "predictions",
            "workstation_predictions"}



def write_profile(path: Path, **changes: object) -> Path:
    fields = {"name": "tiny-board", "arch": "x86_64",
              "precisions": ["fp32", "int8"], "threads": 1, "ram_mb": 4096, "storage_mb": 1,
              "latency_budget_ms": 100.0, **changes}
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items()
                            if v is not None))
    return path


def test_devices_cli_lists_every_profile() -> None:
    assert len(PROFILES) >= 6 and list_profiles() == PROFILES
    proc = run_main("devices")
    assert proc.returncode == 0, proc.stderr
    assert all(name in proc.stdout for name in PROFILES)
    profiles = json.loads(run_main("devices", "--json").stdout)
    coral = next(p for p in profiles if p["name"] == "coral-dev-board")
    assert coral["precisions"] == ["int8"] and coral["formats"] == ["tflite"]
    for name in PROFILES:
        profile = load_profile(name)  # refused if its name is not its file name
        assert profile.name == name
        assert profile.threads >= 1 and profile.ram_mb > 0 and profile.latency_budget_ms > 0


def test_user_profile_files_and_their_errors(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path / "mine.toml"))
    assert isinstance(profile, DeviceProfile) and profile.storage_mb == 1.0
    assert profile.cannot_run("onnx", "fp16") is not None
    assert profile.cannot_run("tflite", "int8") is None
    cases = {"ram_mb": ("missing", None), "threads": ("wrong type", "four"),
             "precisions": ("choose from", ["int4"]), "latency_budget_ms": ("positive", 0)}
    for field, (message, value) in cases.items():
        with pytest.raises(DeviceError, match=rf"'{field}'.*{message}|{message}.*'{field}'"):
            load_profile(write_profile(tmp_path / f"{field}.toml", **{field: value}))
    with pytest.raises(DeviceError, match=r"unknown field.*colour"):
        load_profile(write_profile(tmp_path / "extra.toml", colour="red"))
    (tmp_path / "broken.toml").write_text("name = \n")
    with pytest.raises(DeviceError, match="not valid TOML"):
        load_profile(tmp_path / "broken.toml")
    with pytest.raises(DeviceError, match="unknown device profile 'raspberry-pi-9'"):
        load_profile("raspberry-pi-9")


def test_local_validation_reproduces_workstation_accuracy(digits_bundle: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "validation.json"
    proc = run_main("validate", str(digits_bundle), "--device", "local", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["schema_version"] == 1
    assert result["device"] == {"name": "local", "profile": "generic-x86-64",
                                "arch": "x86_64", "emulated": False}
    manifest = json.loads((digits_bundle / "manifest.json").read_text())
    assert [r["name"] for r in result["artifacts"]] == [a["name"] for a in manifest["artifacts"]]
    assert len(result["artifacts"]) == len(POST_TRAINING.variants())  # the shared export's
    assert result["samples"] == manifest["samples"]  # the rows' predictions: those samples
    for row in result["artifacts"]:
        assert set(row) >= ROW_KEYS, row["name"]
        assert row["status"] == "ok", row
        assert abs(row["accuracy"] - row["workstation_accuracy"]) <= 0.005, row["name"]
        assert row["samples"] == sum(map(sum, row["confusion_matrix"]))
        assert {c["name"]: c["status"] for c in row["checks"]} == {
            "storage": "pass", "memory": "pass", "latency": "pass", "accuracy": "pass"}
    assert "tflite-int8" in proc.stdout and "pass" in proc.stdout


def test_budgets_fail_and_unrunnable_precisions_skip(digits_bundle: Path,
                                                     tmp_path: Path) -> None:
    manifest = json.loads((digits_bundle / "manifest.json").read_text())
    sizes = {a["name"]: a["bytes"] for a in manifest["artifacts"]}
    assert sizes["tflite-int8"] < sizes["tflite-fp32"]
    # A storage budget between the real int8 and fp32 files: fp32 fails, int8 fits.
    storage_mb = round((sizes["tflite-int8"] + sizes["tflite-fp32"]) / 2 / MB, 6)
    tight = write_profile(tmp_path / "tight.toml", storage_mb=storage_mb, ram_mb=1,
                          latency_budget_ms=0.000001, accuracy_tolerance=0.0,
                          formats=["tflite"],
                          precisions=["fp32", "fp16", "dynamic", "int8", "int16x8"])
    result = validate_bundle(digits_bundle, device="self", profile=tight)
    rows = {r["name"]: r for r in result["artifacts"]}
    checks = {c["name"]: c for c in rows["tflite-fp32"]["checks"]}
    assert checks["storage"]["status"] == "fail" and checks["storage"]["limit"] == storage_mb
    assert checks["memory"]["status"] == "fail" and checks["latency"]["status"] == "fail"
    assert checks["accuracy"]["status"] == "pass"  # same runtime, same sample: exact
    int8 = {c["name"]: c["status"] for c in rows["tflite-int8"]["checks"]}
    assert int8["storage"] == "pass"
    for name, row in rows.items():
        storage = next(c for c in row["checks"] if c["name"] == "storage")
        if name.startswith("onnx-"):
            assert row["status"] == "skipped" and "does not run onnx" in row["reason"], name
        else:
            fits = sizes[name] / MB <= storage_mb
            assert storage["status"] == ("pass" if fits else "fail"), (name, storage)
    proc = run_main("validate", str(digits_bundle), "--profile", str(tight),
                   "--artifact", "tflite-fp32")
    assert proc.returncode == 1 and "tflite-fp32:storage" in proc.stderr
    coral = validate_bundle(digits_bundle, device="self", profile="coral-dev-board")
    assert coral["device"]["emulated"] is True
    statuses = {r["name"]: r["status"] for r in coral["artifacts"]}
    assert statuses == {a["name"]: "ok" if (a["format"], a["precision"]) == ("tflite", "int8")
                        else "skipped" for a in manifest["artifacts"]}
    row = next(r for r in coral["artifacts"] if r["name"] == "tflite-int8")
    latency = next(c for c in row["checks"] if c["name"] == "latency")
    assert latency["status"] == "skip" and "another architecture" in latency["detail"]


def test_profile_arch_spellings_and_the_retired_runtime_field(tmp_path: Path) -> None:
    """arm64/amd64 are aarch64/x86_64 (what the machine reports); `runtime` changes nothing,
    so a file that has it loads with a warning to remove it, and must name one of its formats."""
    assert load_profile(write_profile(tmp_path / "a.toml", arch="arm64")).arch == "aarch64"
    assert load_profile(write_profile(tmp_path / "b.toml", arch="AMD64")).arch == "x86_64"
    with pytest.warns(FutureWarning, match="'runtime' has no effect"):
        old = load_profile(write_profile(tmp_path / "c.toml", runtime="tflite"))
    assert "runtime" not in old.to_dict()
    with pytest.raises(DeviceError, match=r"'runtime'.*choose from tflite"):
        load_profile(write_profile(tmp_path / "d.toml", runtime="onnx", formats=["tflite"]))


def test_child_peak_memory_is_its_own_not_the_parents(digits_bundle: Path) -> None:
    """A caller holding 400 MB (as the pipeline runner holds TensorFlow) validates: the
    child's peak is the child's; ru_maxrss, which Linux carries over fork+exec, is not."""
    code = """
import json, resource, subprocess, sys
import numpy as np
ballast = np.ones(400 * 1024 * 1024 // 8)  # 400 MB, touched: resident in the caller
from devices import validate_bundle
row = validate_bundle(sys.argv[1], device="local", artifacts=["tflite-int8"])["artifacts"][0]
probe = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
inherited = float(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                 text=True).stdout)
print(json.dumps({"child": row["peak_memory_mb"], "status": row["status"],
                  "inherited_maxrss": inherited}))
"""
    proc = subprocess.run([sys.executable, "-c", code, str(digits_bundle)], capture_output=True,
                          text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["status"] == "ok"
    if sys.platform == "linux":  # the trap this guards against is real here
        assert seen["inherited_maxrss"] >= 400, seen
    assert 5 < seen["child"] < 250, seen


def rehash(bundle: Path, file: str) -> None:
    """Update the manifest as a (buggy) exporter would have: the sha256 then matches."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        if artifact["file"] == file:
            data = (bundle / file).read_bytes()
            artifact["sha256"], artifact["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_damaged_model_is_a_failed_row_and_the_caller_lives(
    digits_bundle: Path, tmp_path: Path, damage: str
) -> None:
    bundle = Path(shutil.copytree(digits_bundle, tmp_path / "bundle"))
    for file in ("model-fp32.tflite", "model-fp32.onnx"):
        data = bytearray((bundle / file).read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 3]
        else:
            for i in range(0, len(data), 97):
                data[i] ^= 0xFF
        (bundle / file).write_bytes(bytes(data))
        rehash(bundle, file)
    result = validate_bundle(bundle, device="local",
                             artifacts=["tflite-fp32", "onnx-fp32", "tflite-int8"])
    rows = {r["name"]: r for r in result["artifacts"]}
    for name in ("tflite-fp32", "onnx-fp32"):
        assert rows[name]["status"] == "failed"
        assert "again" in rows[name]["reason"], rows[name]["reason"]
    assert rows["tflite-int8"]["status"] == "ok"


def test_a_crashing_runtime_process_becomes_a_failed_row(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash = tmp_path / "segfaulting-python"
    crash.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crash.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crash))
    result = validate_bundle(tiny_bundle, device="local", artifacts=["onnx-int8"])
    (row,) = result["artifacts"]
    assert row["status"] == "failed" and "crashed (SIGSEGV)" in row["reason"]
    assert row["name"] == "onnx-int8" and row["workstation_accuracy"] is not None


@pytest.mark.parametrize(("ending", "exit_code"), [("kill -TERM $$", 143), ("exit 130", 130)])
def test_an_interrupted_runtime_process_interrupts_the_validation(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str,
    exit_code: int
) -> None:
    """A child stopped by SIGTERM, or one that reports Ctrl-C (exit 130), stops the
    validation: an interrupt, never a failed row."""
    child = tmp_path / "interrupted-python"
    child.write_text(f"#!/bin/sh\n{ending}\n")
    child.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(child))
    with pytest.raises(Interrupted) as info:
        validate_bundle(tiny_bundle, device="local", artifacts=["onnx-int8"])
    assert info.value.exit_code == exit_code


def test_bad_device_and_threads_are_user_errors(tiny_bundle: Path) -> None:
    with pytest.raises(DeviceError, match="unknown device 'usb'"):
        validate_bundle(tiny_bundle, device="usb")
    with pytest.raises(DeviceError, match="at least 1"):
        validate_bundle(tiny_bundle, threads=0)
    proc = run_main("validate", str(tiny_bundle), "--device", "ssh://bad host")
    assert proc.returncode == 2 and "bad" in proc.stderr


def test_validate_on_the_users_own_data(digits_bundle: Path, digits_run: Path,
                                        tmp_path: Path) -> None:
    from edge_transfer.train.runs import Run

    val = Run.open(digits_run).splits.val
    order = [4, 3, 2, 1, 0]  # class names in another order: mapped by name, not by index
    names = np.array(["9", "8", "7", "6", "5"])
    np.savez(tmp_path / "mine.npz", x=val.x, y=np.array(order)[val.y], class_names=names)
    result = validate_bundle(digits_bundle, device="self", data=str(tmp_path / "mine.npz"),
                             artifacts=["tflite-fp32"])
    (row,) = result["artifacts"]
    assert row["status"] == "ok" and row["samples"] == len(val.y) and row["accuracy"] > 0.9
    accuracy = next(c for c in row["checks"] if c["name"] == "accuracy")
    assert accuracy["status"] == "skip" and "not the bundle's validation sample" in accuracy[
        "detail"]
    np.savez(tmp_path / "other.npz", x=val.x, y=val.y, class_names=np.array(list("abcde")))
    proc = run_main("validate", str(digits_bundle), "--data", str(tmp_path / "other.npz"))
    assert proc.returncode == 2 and "does not know" in proc.stderr


def test_bench_prints_a_row_per_artifact_and_fails_below_the_floor(
    digits_run: Path, digits_bundle: Path, tmp_path: Path
) -> None:
    from runtime_export import export_folder

    export_dir = export_folder(digits_run)
    run = Path(shutil.copytree(digits_run, tmp_path / "run", ignore=shutil.ignore_patterns(
        "export*", "report*")))
    shutil.copytree(export_dir, run / "export")  # the run's own export, as `export` writes it
    manifest = json.loads((digits_bundle / "manifest.json").read_text())
    names = [a["name"] for a in manifest["artifacts"]]
    out = tmp_path / "bench.json"
    # --device self: one process for all rows (the local device's child per model is
    # test_local_validation_reproduces_workstation_accuracy's)
    proc = run_main("bench", str(run), "--min-accuracy", "1.01", "--json", str(out),
                   "--device", "self")
    assert proc.returncode == 1, proc.stderr
    table = json.loads(out.read_text())
    assert [r["name"] for r in table["rows"]] == names
    for row in table["rows"]:
        assert row["name"] in proc.stdout
        assert row["status"] == "ok" and 0.85 < row["accuracy"] <= 1
        assert row["accuracy"] == row["workstation_accuracy"]  # same runtime, same sample
        assert row["ms_per_image"] > 0 and row["fps"] == pytest.approx(
            1000 / row["ms_per_image"]) and row["size_mb"] > 0
    assert "below --min-accuracy 1.01" in proc.stderr
    assert all(f"{name} (" in proc.stderr for name in names)
    assert table["below_min_accuracy"] and len(table["below_min_accuracy"]) == len(names)
    for header in ("Format", "Status", "Size (MB)", "Accuracy [95%]", "ms/img (p50)", "FPS"):
        assert header in proc.stdout
    row = table["rows"][0]
    assert f"{row['accuracy']:.4f} [" in proc.stdout   # the Wilson interval beside it

    model = run_main("bench", str(export_dir / "model-int8.onnx"), "--min-accuracy", "0.5")
    assert model.returncode == 0, model.stderr
    assert "onnx-int8" in model.stdout and "tflite-int8" not in model.stdout
    bad = run_main("bench", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr

"""The emulated arm64 device: real arm64 LiteRT and ONNX Runtime under qemu, against the host.

The slow tests build the userland (cached in $EDGE_TRANSFER_CACHE/emulated-arm64, else
~/.cache/edge-transfer/emulated-arm64) and need root, debootstrap and qemu-user-static: marked
``emulated``, they skip with the install command where those are missing (see conftest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from devices import emulated
from edge_transfer.core.errors import DeviceError

SAMPLES = 200

# One script, run by the host's Python and by the userland's: each side runs every model on
# the same inputs and saves its raw outputs (int8 outputs stay int8).
RUNNER = r'''
import json, platform, sys, time
from pathlib import Path
import numpy as np

folder = Path(sys.argv[1])
x = np.load(folder / "x.npy")
outputs, seconds = {}, {}
for path in sorted(folder.glob("*.tflite")) + sorted(folder.glob("*.onnx")):
    start = time.perf_counter()
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(inp["index"], list(x.shape))
        interpreter.allocate_tensors()
        feed = x
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            feed = np.clip(np.round(x / scale + zero), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], feed)
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"])
    else:
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        result = session.run(None, {session.get_inputs()[0].name: x})[0]
    seconds[path.name] = time.perf_counter() - start
    outputs[path.name] = result
np.savez(folder / f"outputs-{sys.argv[2]}.npz", **outputs)
(folder / f"info-{sys.argv[2]}.json").write_text(
    json.dumps({"machine": platform.machine(), "seconds": seconds}))
'''


# --------------------------------------------------------------------- errors (fast, no root)


def test_running_without_setup_names_the_setup_command(tmp_path: Path) -> None:
    userland = emulated.Userland.at(tmp_path / "nothing-here")
    with pytest.raises(DeviceError, match=r"run `edge-transfer device setup emulated-arm64 "
                                          r"--dir .*nothing-here` first") as info:
        emulated.run_in_userland(userland, ["python", "-V"])
    assert info.value.exit_code == 2


def test_non_root_is_told_to_run_as_root() -> None:
    with pytest.raises(DeviceError, match=r"needs root .*sudo edge-transfer device setup"):
        emulated.check_host(uid=1000)
    with pytest.raises(DeviceError, match=r"needs root .*run the command as root"):
        emulated.check_host(uid=1000, for_setup=False)
    assert emulated.host_problems(uid=0) == [] or all(
        "root" not in p for p in emulated.host_problems(uid=0))


def _cli_as_nobody(argv: list[str]) -> tuple[int, str]:
    """``edge-transfer ARGV`` in a forked child without root (run as root, it drops root for
    nobody): exit code, stderr.

    What the command imports must be imported before the fork (nobody may not read the venv);
    building the parser here imports every command module.
    """
    from edge_transfer import cli

    cli.build_parser()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, run the CLI, exit with its code
        code = 99
        try:
            os.close(read)
            sys.stderr = os.fdopen(write, "w")
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            code = cli.main(argv)
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        stderr = pipe.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), stderr


def test_setup_as_nobody_exits_2_naming_root(tmp_path: Path) -> None:
    """The real CLI path in a process without root (as root: dropped for nobody): exit 2."""
    import rich.console  # noqa: F401 (imported before the fork: nobody cannot read /root)

    code, stderr = _cli_as_nobody(["device", "setup", "emulated-arm64", "--dir",
                                   str(tmp_path / "arm64")])
    assert code == 2, stderr
    assert "needs root" in stderr and "sudo edge-transfer device setup" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "arm64").exists()


def test_host_mirror_is_read_from_apt_sources(tmp_path: Path) -> None:
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert emulated.host_debian_mirror([tmp_path / "missing", deb822]) == \
        "http://mirror.example/debian"
    ubuntu = tmp_path / "sources.list"
    ubuntu.write_text("deb http://archive.ubuntu.com/ubuntu jammy main\n")
    assert emulated.host_debian_mirror([ubuntu]) is None


# ----------------------------------------------------------- real arm64 runs (slow, emulated)


@pytest.fixture(scope="module")
def userland() -> emulated.Userland:
    start = time.monotonic()
    result = emulated.setup_emulated_arm64(progress=lambda line: print(f"setup: {line}"))
    print(f"setup (or reuse) took {time.monotonic() - start:.1f} s; "
          f"marker seconds {result.info()['seconds']}")
    return result


@pytest.fixture(scope="module")
def models(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp32 and full-int8 .tflite, fp32 and static int8 QDQ .onnx of the digits run's model,
    and the 200 inputs (x.npy) both sides feed them."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edge_transfer.core.keras import load
    from edge_transfer.train.runs import Run

    tf, keras = load()
    import tf2onnx

    run = Run.open(digits_run)
    model = keras.models.load_model(run.model_path)
    x_train, _ = run.split_arrays("train")
    x_test, _ = run.split_arrays("test")
    x_val, _ = run.split_arrays("val")
    x = np.concatenate([x_test, x_val])[:SAMPLES].astype(np.float32)
    assert len(x) == SAMPLES
    calibration = x_train[:100].astype(np.float32)
    out = tmp_path_factory.mktemp("arm64_models")
    np.save(out / "x.npy", x)

    (out / "fp32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    (out / "int8.tflite").write_bytes(converter.convert())

    spec = (tf.TensorSpec((None, *x.shape[1:]), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    onnx.save(proto, out / "fp32.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calibration[i:i + 10]} for i in range(0, 100, 10)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    quantize_static(str(out / "fp32.onnx"), str(out / "int8.onnx"), Reader(),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    # 7-bit weights: x86's AVX2 int8 dot product (no VNNI) saturates its int16
                    # pairs on some models (seen: 103 steps on one output against arm64), which
                    # would be a host defect, not the device's; reduce_range avoids it.
                    reduce_range=True)
    (out / "runner.py").write_text(RUNNER)
    return out


@pytest.mark.slow
@pytest.mark.emulated
def test_run_in_userland_binds_and_cleans_up(userland: emulated.Userland, tmp_path: Path) -> None:
    """Output, exit code and writes through a bind come back; no mount or mountpoint stays."""
    (tmp_path / "in.txt").write_text("from the host")
    proc = emulated.run_in_userland(
        userland, ["sh", "-c", "cat /mnt/io/in.txt; uname -m > /mnt/io/out.txt; exit 3"],
        binds={tmp_path: "/mnt/io"}, timeout=300)
    assert (proc.returncode, proc.stdout) == (3, "from the host")
    assert (tmp_path / "out.txt").read_text() == "aarch64\n"
    mounts = Path("/proc/mounts").read_text()
    assert str(userland.rootfs) not in mounts
    assert not (userland.rootfs / "mnt" / "io").exists()

    start = time.monotonic()
    with pytest.raises(DeviceError, match="did not finish within 2 s"):
        emulated.run_in_userland(userland, ["sleep", "60"], timeout=2)
    assert time.monotonic() - start < 30


@pytest.mark.slow
@pytest.mark.emulated
def test_validate_in_userland_reports_a_failed_validate(userland: emulated.Userland,
                                                        tmp_path: Path) -> None:
    """No validation JSON written inside (an empty bundle): one DeviceError with the reason."""
    with pytest.raises(DeviceError, match=r"validate failed in the emulated arm64 userland "
                                          r"\(exit [12]\): \S+") as info:
        emulated.validate_in_userland(tmp_path, userland=userland, timeout=600)
    print(info.value)


def _onnx_output_scale(path: Path) -> float:
    """The scale of the DequantizeLinear that produces the graph output of a QDQ model."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    output = graph.output[0].name
    producer = {o: n for n in graph.node for o in n.output}
    node = producer[output]
    while node.op_type != "DequantizeLinear":
        node = producer[node.input[0]]
    initializers = {i.name: i for i in graph.initializer}
    return float(numpy_helper.to_array(initializers[node.input[1]]))


@pytest.mark.slow
@pytest.mark.emulated
def test_arm64_outputs_match_the_workstation(userland: emulated.Userland, models: Path) -> None:
    host = subprocess.run([sys.executable, str(models / "runner.py"), str(models), "host"],
                          capture_output=True, text=True, timeout=600)
    assert host.returncode == 0, host.stderr
    start = time.monotonic()
    arm = emulated.run_in_userland(
        userland, ["python", "/mnt/models/runner.py", "/mnt/models", "arm64"],
        binds={models: "/mnt/models"}, timeout=1800)
    wall = time.monotonic() - start
    assert arm.returncode == 0, arm.stderr
    info = json.loads((models / "info-arm64.json").read_text())
    assert info["machine"] == "aarch64"
    assert json.loads((models / "info-host.json").read_text())["machine"] != "aarch64" or \
        emulated.binfmt_state() == "native"

    ours, theirs = np.load(models / "outputs-host.npz"), np.load(models / "outputs-arm64.npz")
    figures = {"wall_seconds": round(wall, 1), "arm64_seconds": info["seconds"]}
    for name in ("fp32.tflite", "fp32.onnx"):
        a, b = ours[name].astype(np.float64), theirs[name].astype(np.float64)
        assert a.shape == b.shape == (SAMPLES, a.shape[1])
        assert np.mean(a.argmax(1) == b.argmax(1)) == 1.0, name
        diff = float(np.abs(a - b).max())
        assert diff < 1e-4, (name, diff)
        figures[name] = {"max_abs_diff": diff}
    results = {}
    for name in ("int8.tflite", "int8.onnx"):
        a, b = ours[name], theirs[name]
        if name.endswith(".tflite"):
            assert a.dtype == b.dtype == np.int8
            steps = np.abs(a.astype(np.int32) - b.astype(np.int32))
        else:
            steps = np.abs(a.astype(np.float64) - b.astype(np.float64)) / _onnx_output_scale(
                models / name)
        agreement = float(np.mean(a.argmax(1) == b.argmax(1)))
        figures[name] = {"max_steps": float(steps.max()), "mean_steps": float(steps.mean()),
                         "differing": float(np.mean(steps > 0.5)), "top1_agreement": agreement}
        results[name] = figures[name]
    print("arm64 vs host:", json.dumps(figures, indent=1))
    for name, seen in results.items():
        # arm64 and x86-64 int8 kernels round differently: seen up to 5 steps (of 1/256 on a
        # softmax) on a few outputs; broken kernels or quantization would be off by tens.
        assert seen["max_steps"] <= 8 and seen["mean_steps"] < 0.25, (name, seen)
        assert seen["top1_agreement"] >= 0.97, (name, seen)


# ----------------------------------------------- validate --device emulated:arm64 (the CLI)


def test_emulated_device_without_setup_exits_2_with_the_command(digits_run: Path,
                                                                 tmp_path: Path) -> None:
    from runtime_export import bundle_folder

    proc = run_cli("validate", str(bundle_folder(digits_run)), "--device", "emulated:arm64",
                   env={"EDGE_TRANSFER_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2, proc.stderr
    assert "edge-transfer device setup emulated-arm64" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("validate", str(bundle_folder(digits_run)), "--device", "stand-in",
                   "--profile", "coral-dev-board")
    assert proc.returncode == 2 and "names no stand-in" in proc.stderr


def test_emulated_device_as_nobody_exits_2_naming_root(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """validate --device emulated:arm64 in a process without root: exit 2, one line."""
    import rich.console
    import rich.table  # noqa: F401

    import devices.validate  # noqa: F401

    monkeypatch.setenv("EDGE_TRANSFER_CACHE", str(tmp_path / "cache"))
    code, stderr = _cli_as_nobody(["validate", str(tmp_path), "--device", "emulated:arm64"])
    assert code == 2, stderr
    assert "needs root" in stderr and "edge-transfer device setup emulated-arm64" in stderr
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.emulated
def test_digits_bundle_validated_on_emulated_arm64(userland: emulated.Userland,
                                                  digits_run: Path, tmp_path: Path) -> None:
    """fp32 and int8, TFLite and ONNX, on the arm64 runtimes through the CLI (the Raspberry
    Pi 5 profile's stand-in); the workstation's outputs on the same sample beside them."""
    from runtime_export import CORE, bundle_folder, export_folder

    bundle = bundle_folder(digits_run)
    out = tmp_path / "arm64.json"
    only = [arg for name in CORE for arg in ("--artifact", name)]
    proc = run_cli("validate", str(bundle), "--device", "stand-in", "--profile",
                   "raspberry-pi-5", "--json", str(out), *only, timeout=1800)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["device"]["name"] == "emulated:arm64" and result["device"]["emulated"] is True
    assert result["device"]["arch"] == "aarch64"
    assert result["device"]["profile"] == "raspberry-pi-5"
    rows = {r["name"]: r for r in result["artifacts"]}
    assert list(rows) == list(CORE)
    for name, row in rows.items():
        assert row["status"] == "ok", row
        agreement = row["agreement"]
        assert agreement["reference"] == "workstation"
        assert agreement["samples"] == row["samples"] > 100
        assert row["accuracy"] > 0.85 and row["workstation_accuracy"] is not None
        if row["precision"] == "fp32":
            assert agreement["top1"] == 1.0, (name, agreement)
            assert agreement["max_abs_diff"] < 1e-4, (name, agreement)
            assert row["accuracy"] == row["workstation_accuracy"]
        else:  # arm64 int8 kernels may round a step apart (see the issue): close, not equal
            assert agreement["top1"] >= 0.97 and agreement["max_abs_diff"] < 0.1, agreement
            # Unpaired here: 2 points, but never under 3 images (0.02 is 2.7 of 134).
            assert abs(row["accuracy"] - row["workstation_accuracy"]) <= max(
                0.02, 3 / row["samples"])
        latency = next(c for c in row["checks"] if c["name"] == "latency")
        assert latency["status"] == "skip" and latency["emulated"] is True
        assert "emulation" in latency["detail"]
    assert "Top-1 agree" in proc.stdout and "emulated" in proc.stdout

    report_dir = tmp_path / "report"
    proc = run_cli("report", str(digits_run), "--export", str(export_folder(digits_run)),
                   "--validation", str(out), "--out", str(report_dir))
    assert proc.returncode == 0, proc.stderr
    report = {r["name"]: r for r in json.loads((report_dir / "report.json").read_text())[
        "artifacts"]}
    for name, row in rows.items():
        assert report[name]["device_accuracy"] == row["accuracy"]
        assert report[name]["agreement_top1"] == row["agreement"]["top1"]
        assert report[name]["max_abs_diff"] == row["agreement"]["max_abs_diff"]
    assert "agree" in proc.stdout and "top-1 agree" in (report_dir / "report.md").read_text()

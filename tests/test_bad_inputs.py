"""A catalogue of bad input over every command.

Each case runs ``edge-transfer ARGS`` in this process through ``cli.main`` (``isolate``
cases, which hand damaged files to native code or decode a bomb, in a subprocess of their own:
a crash there must stay a failed case, and the exit code is the real process's) and asserts
the error contract: exit
code 2 (or 0 where the input is accepted, e.g. an image of another size is resized), exactly
one ``error:`` line naming the problem and the fix, no traceback, and nothing left behind in
the case's output folder (no file at all, no half-written temporary).

The cases share one run directory, its four-variant export and bundle (the tiny session
fixtures: no case asserts accuracy); each case builds its bad file in microseconds from them.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, run_main
from PIL import Image


@dataclass(frozen=True)
class Env:
    run: Path        # a fine-tuned run directory (do not modify: copy it)
    bundle: Path     # a bundle of that run (do not modify: copy it)
    export: Path     # the run's shared export folder (do not modify: copy it)
    tmp: Path        # this case's own folder
    out: Path        # this case's output folder: must not exist after a refused case

    def copy_bundle(self) -> Path:
        return Path(shutil.copytree(self.bundle, self.tmp / "bundle"))

    def copy_run(self) -> Path:
        dest = self.tmp / "run"
        shutil.copytree(self.run, dest, ignore=shutil.ignore_patterns("export*"))
        return dest

    def model(self, name: str) -> bytes:
        return (self.bundle / name).read_bytes()


# --------------------------------------------------------------------------- bad files


def _file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 3]


def _bitflipped(data: bytes, every: int = 97) -> bytes:
    flipped = bytearray(data)
    for i in range(0, len(flipped), every):
        flipped[i] ^= 0xFF
    return bytes(flipped)


def _png(path: Path, size: tuple[int, int] = (8, 8), mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], len(mode)), np.uint8)
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode=mode).save(path)
    return path


def _bomb(path: Path) -> Path:
    """A 20000 x 20000 PNG (400 megapixels) of a few hundred kilobytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (20000, 20000)).save(path)
    return path


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _digits_npz(path: Path, poison: float | None = None) -> Path:
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1)).astype(np.float32) * 16
    if poison is not None:
        x[3, 2, 2, 0] = poison
    return _npz(path, x=x, y=np.repeat(np.arange(4), 10))


def _object_npz(path: Path) -> Path:
    x = np.empty(40, dtype=object)
    x[:] = [np.zeros((8, 8)) for _ in range(40)]
    return _npz(path, x=x, y=np.repeat(np.arange(4), 10))


def _folder(root: Path, classes: list[str], per_class: int = 3) -> Path:
    for name in classes:
        for i in range(per_class):
            _png(root / name / f"{i}.png")
    return root


def _not_images(root: Path) -> Path:
    for name in ("a", "b"):
        for i in range(3):
            _file(root / name / f"{i}.png", b"this is not a png, it is text\n")
    return root


def _lambda_keras(path: Path) -> Path:
    from edge_transfer.core.keras import load

    _, keras = load()
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.save(path)
    return path


def _manifest(bundle: Path, **changes: object) -> Path:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def _evil_tar(env: Env) -> Path:
    archive = env.tmp / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(env.bundle, arcname="bundle")
        data = b"owned\n"
        entry = tarfile.TarInfo("bundle/../../escaped.txt")
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))
    return archive


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _export_dir(env: Env, tamper: Callable[[Path, dict], None]) -> Path:
    """A copy of the run's export folder with export.json tampered."""
    folder = Path(shutil.copytree(env.export, env.tmp / "export"))
    record = json.loads((folder / "export.json").read_text())
    tamper(folder, record)
    (folder / "export.json").write_text(json.dumps(record))
    return folder


def _flip_model_file(folder: Path, record: dict) -> None:
    path = folder / record["artifacts"][0]["file"]
    path.write_bytes(_bitflipped(path.read_bytes()))


def _bad_run_model(env: Env, damage: Callable[[bytes], bytes]) -> Path:
    run = env.copy_run()
    (run / "model.keras").write_bytes(damage((run / "model.keras").read_bytes()))
    return run


def _lambda_run(env: Env) -> Path:
    run = env.copy_run()
    _lambda_keras(run / "model.keras")
    return run


def _bitflipped_keras(data: bytes) -> bytes:
    """Flip bytes inside the zip's stored members (the archive still opens)."""
    return _bitflipped(data, every=211)


# --------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Env], list[str]]
    words: tuple[str, ...]          # each must appear in the one error line
    code: int = 2
    isolate: bool = False           # run in a subprocess (native code meets damaged input)


def _train(cmd: str, data: Callable[[Env], str], *extra: str) -> Callable[[Env], list[str]]:
    def args(env: Env) -> list[str]:
        return [cmd, "--data", data(env), "--out", str(env.out), "--epochs", "1", "--quiet",
                *extra]
    return args


def _pred(model: Callable[[Env], Path], image: Callable[[Env], Path]) -> Callable:
    return lambda env: ["predict", str(model(env)), str(image(env))]


def _val(bundle: Callable[[Env], Path], *extra: str) -> Callable[[Env], list[str]]:
    return lambda env: ["validate", str(bundle(env)), "--json", str(env.out / "v.json"), *extra]


def _tflite(env: Env) -> Path:
    return _file(env.tmp / "model.tflite", env.model("model-fp32.tflite"))


CASES = [
    # ---- pretrain
    Case("pretrain-missing-folder", _train("pretrain", lambda e: str(e.tmp / "nope")),
         ("does not exist",)),
    Case("pretrain-zero-byte-npz",
         _train("pretrain", lambda e: str(_file(e.tmp / "d.npz", b"")))
         , ("d.npz", "empty")),
    Case("pretrain-npz-nan",
         _train("pretrain", lambda e: str(_digits_npz(e.tmp / "d.npz", np.nan))),
         ("NaN",)),
    Case("pretrain-npz-inf",
         _train("pretrain", lambda e: str(_digits_npz(e.tmp / "d.npz", np.inf))),
         ("Inf",)),
    Case("pretrain-npz-object-arrays",
         _train("pretrain", lambda e: str(_object_npz(e.tmp / "d.npz"))),
         ("object", "pickle")),
    Case("pretrain-lambda-backbone",
         _train("pretrain", lambda e: "digits:0-2", "--backbone", "{lambda}"),
         ("Lambda", "--unsafe-load")),
    # ---- finetune
    Case("finetune-files-not-images",
         _train("finetune", lambda e: str(_not_images(e.tmp / "imgs"))),
         ("unreadable", "--skip-bad-files")),
    Case("finetune-decompression-bomb",
         _train("finetune", lambda e: str(_bomb(_folder(e.tmp / "imgs", ["a", "b"]) / "a"
                                                / "bomb.png").parents[1])),
         ("bomb.png", "pixels"), isolate=True),
    Case("finetune-truncated-keras-backbone",
         _train("finetune", lambda e: "digits:5-9", "--backbone", "{truncated_keras}"),
         ("model.keras", "again")),
    Case("finetune-bitflipped-keras-backbone",
         _train("finetune", lambda e: "digits:5-9", "--backbone", "{bitflipped_keras}"),
         ("model.keras", "again"), isolate=True),
    Case("finetune-wrong-extension-backbone",
         _train("finetune", lambda e: "digits:5-9", "--backbone", "{keras_as_txt}"),
         ("model.txt",)),
    Case("finetune-zero-byte-keras-backbone",
         _train("finetune", lambda e: "digits:5-9", "--backbone", "{empty_keras}"),
         ("model.keras",)),
    # ---- export
    Case("extend-out-is-the-run",
         lambda e: ["extend", str(e.copy_run()), "--data", "digits:0-1", "--out",
                    str(e.tmp / "run")],
         ("--out", "must differ from RUN")),
    Case("extend-negative-memory",
         lambda e: ["extend", str(e.copy_run()), "--data", "digits:0-1", "--out", str(e.out),
                    "--memory", "-1"],
         ("--memory", "0 or more")),
    Case("export-missing-run", lambda e: ["export", str(e.tmp / "nope"), "--out", str(e.out)],
         ("not a run directory",)),
    Case("export-truncated-model",
         lambda e: ["export", str(_bad_run_model(e, _truncated)), "--out", str(e.out)],
         ("model.keras", "again")),
    Case("export-bitflipped-model",
         lambda e: ["export", str(_bad_run_model(e, _bitflipped_keras)), "--out", str(e.out)],
         ("model.keras", "again"), isolate=True),
    Case("export-zero-byte-model",
         lambda e: ["export", str(_bad_run_model(e, lambda _: b"")), "--out", str(e.out)],
         ("model.keras",)),
    Case("export-lambda-model",
         lambda e: ["export", str(_lambda_run(e)), "--out", str(e.out)],
         ("Lambda", "--unsafe-load")),
    Case("export-unknown-precision",
         lambda e: ["export", str(e.run), "--precision", "int3", "--out", str(e.out)],
         ("int3",)),
    # ---- bundle
    Case("bundle-missing-run", lambda e: ["bundle", str(e.tmp / "nope"), "--out", str(e.out)],
         ("not a run directory",)),
    Case("bundle-sha256-mismatch",
         lambda e: ["bundle", str(e.run), "--out", str(e.out), "--export-dir",
                    str(_export_dir(e, _flip_model_file))],
         ("sha256", "export the run again")),
    Case("bundle-zero-byte-export-json",
         lambda e: ["bundle", str(e.run), "--out", str(e.out), "--export-dir",
                    str(_file(e.tmp / "exp" / "export.json", b"").parent)],
         ("export.json", "again")),
    Case("bundle-unknown-export-schema",
         lambda e: ["bundle", str(e.run), "--out", str(e.out), "--export-dir",
                    str(_export_dir(e, lambda _f, r: r.update(schema_version=99)))],
         ("schema_version 99",)),
    # ---- validate
    Case("validate-missing-bundle", _val(lambda e: e.tmp / "nope"), ("does not exist",)),
    Case("validate-unknown-schema",
         _val(lambda e: _manifest(e.copy_bundle(), schema_version=7)), ("schema_version 7",)),
    Case("validate-sha256-mismatch",
         _val(lambda e: _file(e.copy_bundle() / "model-fp32.tflite",
                              _bitflipped(e.model("model-fp32.tflite"))).parent),
         ("sha256",)),
    Case("validate-tar-entry-escapes", _val(_evil_tar), ("leaves the bundle folder",)),
    Case("validate-zero-byte-tar", _val(lambda e: _file(e.tmp / "b.tar.gz", b"")),
         ("b.tar.gz",)),
    Case("validate-data-other-classes",
         _val(lambda e: e.bundle, "--data", "{other_classes}"), ("classes", "labels")),
    Case("validate-data-npz-nan",
         _val(lambda e: e.bundle, "--data", "{nan_npz}"), ("NaN",)),
    Case("validate-ssh-no-answer",
         _val(lambda e: e.bundle, "--device", "ssh://nobody@127.0.0.1:{closed_port}",
              "--connect-timeout", "2"),
         ("127.0.0.1", "nothing listens on that port")),
    Case("validate-json-is-a-folder",
         lambda e: ["validate", str(e.bundle), "--json", str(e.tmp)], ("--json", "folder")),
    # ---- predict
    Case("predict-truncated-tflite",
         _pred(lambda e: _file(e.tmp / "m.tflite", _truncated(e.model("model-fp32.tflite"))),
               lambda e: _png(e.tmp / "x.png")), ("m.tflite",), isolate=True),
    Case("predict-bitflipped-onnx",
         _pred(lambda e: _file(e.tmp / "m.onnx", _bitflipped(e.model("model-fp32.onnx"), 7)),
               lambda e: _png(e.tmp / "x.png")), ("m.onnx",), isolate=True),
    Case("predict-zero-byte-onnx",
         _pred(lambda e: _file(e.tmp / "m.onnx", b""), lambda e: _png(e.tmp / "x.png")),
         ("m.onnx", "empty")),
    Case("predict-wrong-extension",
         _pred(lambda e: _file(e.tmp / "m.txt", e.model("model-fp32.tflite")),
               lambda e: _png(e.tmp / "x.png")), ("m.txt", ".tflite")),
    Case("predict-not-an-image",
         _pred(_tflite, lambda e: _file(e.tmp / "x.png", b"hello")), ("x.png",)),
    Case("predict-decompression-bomb",
         _pred(_tflite, lambda e: _bomb(e.tmp / "bomb.png")), ("bomb.png", "pixels")),
    Case("predict-missing-image",
         _pred(_tflite, lambda e: e.tmp / "nope.png"), ("nope.png", "does not exist")),
    Case("predict-missing-model",
         _pred(lambda e: e.tmp / "nope.tflite", lambda e: _png(e.tmp / "x.png")),
         ("nope.tflite",)),
    Case("predict-rgb-image-of-another-size-is-resized",
         _pred(_tflite, lambda e: _png(e.tmp / "x.png", (33, 21), "RGB")), (), code=0,
         isolate=True),
    # ---- report
    Case("report-missing-run", lambda e: ["report", str(e.tmp / "nope"), "--out", str(e.out)],
         ("not a run directory",)),
    Case("report-zero-byte-validation",
         lambda e: ["report", str(e.run), "--export", str(e.export), "--out", str(e.out),
                    "--validation", str(_file(e.tmp / "v.json", b""))], ("v.json",)),
    Case("report-out-is-a-file",
         lambda e: ["report", str(e.run), "--export", str(e.export),
                    "--out", str(_file(e.tmp / "r.txt", b"x"))],
         ("r.txt", "folder")),
    # ---- bench, demo
    Case("bench-missing-model", lambda e: ["bench", str(e.tmp / "nope.tflite")],
         ("nope.tflite", "does not exist")),
    Case("bench-min-accuracy-not-a-fraction",
         lambda e: ["bench", str(e.bundle), "--min-accuracy", "95"], ("--min-accuracy", "0.95")),
    Case("demo-out-is-a-file", lambda e: ["demo", "--out", str(_file(e.tmp / "d.txt", b"x"))],
         ("d.txt", "is a file")),
    # ---- check
    Case("check-missing-report",
         lambda e: ["check", str(e.tmp / "nope.json"), "--baseline",
                    str(_file(e.tmp / "b.json", b"{}")), "--junit", str(e.out / "j.xml")],
         ("nope.json",)),
    Case("check-truncated-report",
         lambda e: ["check", str(_file(e.tmp / "r.json", b'{"schema_version": 1, "art')),
                    "--baseline", str(_file(e.tmp / "b.json", b"{}")),
                    "--junit", str(e.out / "j.xml")], ("r.json",)),
    # ---- run
    Case("run-missing-pipeline",
         lambda e: ["run", str(e.tmp / "nope.toml"), "--out", str(e.out)], ("nope.toml",)),
    Case("run-pipeline-not-toml",
         lambda e: ["run", str(_file(e.tmp / "p.toml", b"[finetune\ndata = ")), "--out",
                    str(e.out)], ("p.toml",)),
    Case("run-pipeline-unknown-step",
         lambda e: ["run", str(_file(e.tmp / "p.toml", b"[deploy]\nx = 1\n")), "--out",
                    str(e.out)], ("deploy",)),
    # ---- diagnose
    Case("diagnose-missing-run", lambda e: ["diagnose", str(e.tmp / "nope")],
         ("nope", "finetune")),
    Case("diagnose-dynamic-is-not-measured",
         lambda e: ["diagnose", str(e.run), "--precision", "dynamic", "--out", str(e.out)],
         ("dynamic", "--precision int8")),
    # ---- devices, device
    Case("devices-unknown-option", lambda e: ["devices", "--format", "xml"], ("--format",)),
    Case("backbones-unknown-family", lambda e: ["backbones", "--family", "ResNeXt"],
         ("ResNeXt", "RegNetX")),
    Case("device-unknown-action", lambda e: ["device", "frobnicate"], ("frobnicate",)),
    Case("device-setup-unknown-device",
         lambda e: ["device", "setup", "raspberry-pi-9", "--dir", str(e.out)],
         ("raspberry-pi-9", "emulated-arm64")),
]

# Placeholders filled in per case, each built only when a case names it.
PLACEHOLDERS: dict[str, Callable[[Env], str]] = {
    "lambda": lambda e: str(_lambda_keras(e.tmp / "lambda.keras")),
    "truncated_keras": lambda e: str(_file(e.tmp / "model.keras",
                                           _truncated((e.run / "model.keras").read_bytes()))),
    "bitflipped_keras": lambda e: str(_file(
        e.tmp / "model.keras", _bitflipped_keras((e.run / "model.keras").read_bytes()))),
    "keras_as_txt": lambda e: str(_file(e.tmp / "model.txt", (e.run / "model.keras").read_bytes())),
    "empty_keras": lambda e: str(_file(e.tmp / "model.keras", b"")),
    "other_classes": lambda e: str(_folder(e.tmp / "imgs", ["cat", "dog"])),
    "nan_npz": lambda e: str(_digits_npz(e.tmp / "d.npz", np.nan)),
    "closed_port": lambda e: str(_closed_port()),
}


def _fill(arg: str, env: Env) -> str:
    for key, make in PLACEHOLDERS.items():
        if "{" + key + "}" in arg:
            arg = arg.replace("{" + key + "}", make(env))
    return arg


@pytest.fixture(scope="module")
def shared(tiny_run: Path, tiny_bundle: Path, tiny_export: Path) -> tuple[Path, Path, Path]:
    return tiny_run, tiny_bundle, tiny_export


def _left_behind(env: Env) -> list[str]:
    found = []
    if env.out.exists():
        found += [str(p) for p in env.out.rglob("*")] or [str(env.out)]
    found += [str(p) for p in env.tmp.rglob("*") if ".tmp" in p.name]
    return found


# LiteRT's C++ logger prints this when an interpreter is created; not ours to silence.
LIBRARY_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate",)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, shared: tuple[Path, Path, Path], tmp_path: Path) -> None:
    run, bundle, export = shared
    env = Env(run=run, bundle=bundle, export=export, tmp=tmp_path, out=tmp_path / "out")
    args = [_fill(a, env) for a in case.args(env)]
    result = run_cli(*args, timeout=120) if case.isolate else run_main(*args)
    crashed = result.returncode not in (0, 1, 2) or "Traceback" in result.stderr
    assert not crashed, result.stderr[-3000:]
    assert result.returncode == case.code, result.stderr[-3000:]
    if case.code == 2:
        lines = [line for line in result.stderr.splitlines()
                 if line.strip() and not line.startswith(LIBRARY_NOISE)]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        for word in case.words:
            assert word in lines[0], lines[0]
    left = _left_behind(env) if case.code else []
    assert not left, f"left behind: {left}"


def test_catalogue_covers_every_command() -> None:
    from edge_transfer.cli import COMMANDS

    covered = {c.id.split("-")[0] for c in CASES}
    assert set(COMMANDS) - {"demo"} <= covered, set(COMMANDS) - covered
    assert len(CASES) >= 30
    isolated = [c for c in CASES if c.isolate]
    assert 3 <= len(isolated) <= 8 and {c.code for c in isolated} == {0, 2}

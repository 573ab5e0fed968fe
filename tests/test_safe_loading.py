"""Safe loading: Keras safe mode unless --unsafe-load, .npz without pickle, archives that
cannot leave their folder, no shell strings, SSH host keys checked by default."""

from __future__ import annotations

import argparse
import ast
import io
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

from devices.ssh import SSHTarget
from edge_transfer.cli import build_parser
from edge_transfer.core.errors import BundleError, DataError, DeviceError, ModelError
from edge_transfer.deploy.bundle import open_bundle

SOURCES = sorted(p for folder in ("edge_transfer", "exporters", "devices")
                 for p in (REPO_ROOT / folder).rglob("*.py"))


def _lambda_model(path: Path) -> Path:
    from edge_transfer.core.keras import load

    _, keras = load()
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    keras.Model(inputs, outputs).save(path)
    return path


def test_lambda_layers_need_unsafe_load(tmp_path: Path) -> None:
    from edge_transfer.train.models import check_model_file, load_keras_model

    path = _lambda_model(tmp_path / "lambda.keras")
    with pytest.raises(ModelError, match=r"Lambda.*--unsafe-load"):
        load_keras_model(path)
    # seen in the archive's config, before TensorFlow is needed (refused as Keras would)
    with pytest.raises(ModelError, match=r"Lambda.*--unsafe-load"):
        check_model_file(path)
    assert check_model_file(path, unsafe_load=True) == path
    model = load_keras_model(path, unsafe_load=True)
    np.testing.assert_allclose(model.predict(np.ones((1, 4)), verbose=0), 2.0)


@pytest.mark.parametrize("command", ["pretrain", "finetune", "export", "diagnose"])
@pytest.mark.parametrize("flag", ["--unsafe-load", "--unsafe"])
def test_every_model_loading_command_takes_unsafe_load(command: str, flag: str) -> None:
    """One name (unsafe_load, --unsafe-load) everywhere; --unsafe is a hidden old spelling."""
    required = {"export": ["RUN"], "diagnose": ["RUN"]}.get(
        command, ["--data", "digits", "--out", "x"])
    args = build_parser().parse_args([command, *required, flag])
    assert args.unsafe_load is True
    default = build_parser().parse_args([command, *required])
    assert not getattr(default, "unsafe_load", False)
    assert "--unsafe " not in _help(command)


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    from edge_transfer.data.npz_file import load_npz

    class Boom:
        def __reduce__(self):
            return (Path(tmp_path / "pwned").touch, ())

    x = np.empty(2, dtype=object)
    x[:] = [Boom(), Boom()]
    np.savez(tmp_path / "evil.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(DataError, match="object arrays"):
        load_npz(tmp_path / "evil.npz")
    assert not (tmp_path / "pwned").exists()


def test_every_np_load_refuses_pickle() -> None:
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and getattr(node.func.value, "id", None) == "np"):
                pickle = [k for k in node.keywords if k.arg == "allow_pickle"]
                assert pickle and getattr(pickle[0].value, "value", None) is False, (
                    f"{path}:{node.lineno} np.load without allow_pickle=False")


def test_no_shell_strings() -> None:
    """No subprocess call with shell=True, no os.system / os.popen anywhere."""
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "os":
                assert func.attr not in ("system", "popen"), f"{path}:{node.lineno} os.{func.attr}"
            for keyword in node.keywords:
                assert not (keyword.arg == "shell"
                            and getattr(keyword.value, "value", False) is not False), (
                    f"{path}:{node.lineno} shell=True")


def _archive(path: Path, name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        entry = tarfile.TarInfo(name)
        entry.type, entry.linkname = kind, link
        data = b"x" if kind == tarfile.REGTYPE else b""
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name, kind, link", [
    ("../escaped.txt", tarfile.REGTYPE, ""),
    ("/tmp/absolute.txt", tarfile.REGTYPE, ""),
    ("b/link", tarfile.SYMTYPE, "/etc/passwd"),
    ("b/hard", tarfile.LNKTYPE, "../../outside"),
    ("b/dev", tarfile.CHRTYPE, ""),
])
def test_archives_cannot_leave_their_folder(tmp_path: Path, name: str, kind: bytes,
                                            link: str, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _archive(tmp_path / "b.tar.gz", name, kind, link)
    # A temporary folder of this test's own: other workers' bundles come and go in /tmp.
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(BundleError, match="refusing archive entry"):
        open_bundle(archive)
    assert list(temp.iterdir()) == [], "temporary folder left"
    assert not (tmp_path / "escaped.txt").exists()


def test_ssh_checks_host_keys_by_default() -> None:
    options = SSHTarget.parse("ssh://pi@127.0.0.1:2222")._common()
    assert "StrictHostKeyChecking=yes" in options and "BatchMode=yes" in options
    own = SSHTarget.parse("ssh://pi@h", options=["StrictHostKeyChecking=accept-new"])._common()
    assert "StrictHostKeyChecking=yes" not in own and "StrictHostKeyChecking=accept-new" in own
    for off in ("StrictHostKeyChecking=no", "StrictHostKeyChecking off"):
        with pytest.raises(DeviceError, match="refusing to turn host-key checking off"):
            SSHTarget.parse("ssh://pi@h", options=[off])


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return str(sub.choices[command].format_help())

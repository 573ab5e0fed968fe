"""The light install (no extras) in a fresh virtualenv validates a bundle without TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from runtime_export import CORE, bundle_folder

pytestmark = pytest.mark.slow


def copy_sources(target: Path) -> Path:
    """The repository's installable parts (not .git, tests or build leftovers)."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, target / name)
    for package in ("edge_transfer", "exporters", "devices"):
        if (REPO_ROOT / package).is_dir():
            shutil.copytree(REPO_ROOT / package, target / package,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def test_light_install_validates_a_bundle_without_tensorflow(digits_run: Path,
                                                              tmp_path: Path) -> None:
    bundle = bundle_folder(digits_run)
    source = copy_sources(tmp_path / "src")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python, cli = env_dir / "bin" / "python", env_dir / "bin" / "edge-transfer"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)],
                             capture_output=True, text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True,
                           text=True, env=env, cwd=elsewhere)
    assert probe.returncode != 0 and "No module named 'tensorflow'" in probe.stderr
    out = elsewhere / "validation.json"
    only = [arg for name in CORE for arg in ("--artifact", name)]
    proc = subprocess.run([str(cli), "validate", str(bundle), "--json", str(out), *only],
                          capture_output=True, text=True, env=env, cwd=elsewhere, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [r["status"] for r in result["artifacts"]] == ["ok"] * len(CORE)
    for row in result["artifacts"]:
        assert abs(row["accuracy"] - row["workstation_accuracy"]) <= 0.005
    devices = subprocess.run([str(cli), "devices"], capture_output=True, text=True, env=env,
                             cwd=elsewhere, timeout=120)
    assert devices.returncode == 0 and "coral-dev-board" in devices.stdout
    # the measured support matrix installs with the package (edge-transfer backbones reads it)
    matrix = subprocess.run(
        [str(python), "-c", "from edge_transfer.report.support import load_matrix; "
                            "print(len(load_matrix()['models']))"],
        capture_output=True, text=True, env=env, cwd=elsewhere, timeout=120)
    assert matrix.returncode == 0 and int(matrix.stdout) > 10, matrix.stderr

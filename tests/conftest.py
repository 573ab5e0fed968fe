"""Shared fixtures and helpers of the tests; test modules import them as ``from conftest
import ...`` (the one spelling: pytest puts ``tests/`` on ``sys.path``).

Tests that need parts of the operating system (a real sshd, root, debootstrap, qemu) or the
deploy clients (MediaPipe, OpenVINO, ...: a second venv) are marked ``ssh``, ``emulated`` or
``clients``, or call :func:`require_system`. Where a part is missing they
skip with one line naming the install command; with ``EDGE_TRANSFER_REQUIRE_SYSTEM=1`` (set by
``.ci/run``) the same line is a failure, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIRE_SYSTEM = "EDGE_TRANSFER_REQUIRE_SYSTEM"
# Where Debian puts system daemons; a normal user's PATH often lacks them.
_SBIN = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))


def find_tool(name: str) -> str | None:
    """``name`` on the PATH or in the sbin folders, else None."""
    return shutil.which(name, path=os.environ.get("PATH", os.defpath) + os.pathsep + _SBIN)


def system_problems(part: str) -> list[str]:
    """What this machine lacks for ``part`` (``sshd``, ``root``, ``emulated-arm64`` or
    ``clients``), each with its fix; empty when it has everything."""
    if part == "sshd":
        missing = [tool for tool in ("sshd", "ssh", "ssh-keygen") if find_tool(tool) is None]
        return [f"{', '.join(missing)} not found: apt-get install openssh-server "
                "openssh-client"] if missing else []
    if part == "root":
        return [] if os.geteuid() == 0 else ["needs root: run the tests as root (e.g. sudo)"]
    if part == "emulated-arm64":
        from devices import emulated

        return emulated.host_problems()
    if part == "clients":
        return client_problems()
    raise ValueError(f"unknown system part {part!r}")


def require_system(*parts: str) -> None:
    """Skip the calling test, with one line naming each fix, unless this machine has every
    system part in ``parts``; under ``EDGE_TRANSFER_REQUIRE_SYSTEM=1`` fail instead."""
    problems = [p for part in parts for p in system_problems(part)]
    if not problems:
        return
    line = f"needs {', '.join(parts)}: {'; '.join(problems)}"
    if os.environ.get(REQUIRE_SYSTEM, "") not in ("", "0"):
        pytest.fail(f"{line} ({REQUIRE_SYSTEM} is set: CI runs every test)", pytrace=False)
    pytest.skip(f"{line} (skipped; {REQUIRE_SYSTEM}=1 makes this a failure)")


# What the deploy clients' Python must import, and the command that installs it there.
CLIENT_MODULES = ("mediapipe", "openvino", "model_api", "ai_edge_litert", "onnxruntime")
CLIENTS_INSTALL = "python3 -m venv .venv-clients && .venv-clients/bin/pip install '.[clients]'"


def client_problems() -> list[str]:
    """What the deploy clients' Python (devices.clients.clients_python) lacks, with the fix."""
    from devices.clients import PYTHON_ENV, clients_python

    python = clients_python()
    probe = ("import importlib.util as u, sys; "
             "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))")
    try:
        proc = subprocess.run([python, "-c", probe, *CLIENT_MODULES], capture_output=True,
                              text=True, timeout=120)
        missing = proc.stdout.split() if proc.returncode == 0 else list(CLIENT_MODULES)
    except OSError:
        missing = list(CLIENT_MODULES)
    if not missing:
        return []
    return [f"the deploy clients' Python {python} lacks {', '.join(missing)}: {CLIENTS_INSTALL} "
            f"(or set {PYTHON_ENV} to a Python that has them)"]


# The markers that stand for system parts (see pyproject.toml's markers).
MARKER_PARTS = {"ssh": ("sshd",), "emulated": ("emulated-arm64",), "clients": ("clients",)}


# The tiers (pyproject.toml's markers), by the session fixtures a test uses.
TRAINED_FIXTURES = ("pretrain_run", "digits_run", "digits_bundle")
TINY_FIXTURES = ("tiny_run", "tiny_export", "tiny_bundle")


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test ``trained`` or ``tiny`` by the fixtures it uses (directly or through
    other fixtures), so the tiers need no marker to be kept by hand; under
    ``pytest -n 2 --dist loadgroup`` (pytest-xdist) also give each test its group."""
    # pytest-xdist collects in each worker, where it sets ``dist`` to "no" and ``loadgroup``.
    grouped = (getattr(config.option, "loadgroup", False)
               or getattr(config.option, "dist", "no") == "loadgroup")
    for item in items:
        names = getattr(item, "fixturenames", ())
        if any(name in names for name in TRAINED_FIXTURES):
            item.add_marker("trained")
        elif any(name in names for name in TINY_FIXTURES):
            item.add_marker("tiny")
        if grouped:
            item.add_marker(pytest.mark.xdist_group(xdist_group(item)))


def xdist_group(item: pytest.Item) -> str:
    """The worker group of a test under ``--dist loadgroup``: the tests of the trained session
    fixtures (pretrain, fine-tune and their shared exports, built once) and those that use
    the emulated arm64 userland (its binds must not overlap) in one group; any other test
    with the tests of its module, so a module-scoped fixture is built once."""
    names = getattr(item, "fixturenames", ())
    if item.get_closest_marker("emulated") or any(n in names for n in TRAINED_FIXTURES):
        return "trained"
    return item.nodeid.split("::")[0]


def pytest_configure(config: pytest.Config) -> None:
    """In a pytest-xdist worker of several, TensorFlow's intra-op pool gets one thread (here
    and in the CLI children, which inherit the variable), so two workers on two cores do not
    run four busy threads."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")




@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of a marked test is built (an sshd, the arm64 userland)."""
    parts = [p for marker, ps in MARKER_PARTS.items() if item.get_closest_marker(marker)
             for p in ps]
    if parts:
        require_system(*parts)


def run_cli(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    """``edge-transfer ARGS`` in a subprocess of this interpreter, output captured."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "edge_transfer", *args],
        capture_output=True, text=True, timeout=timeout, env=env, **kwargs,
    )


# Variables libraries set in os.environ themselves: tf2onnx on each conversion
# (TF_CPP_MIN_LOG_LEVEL, which TensorFlow reads only when first imported), joblib and sklearn
# when first imported (the KMP_ pair, for Intel's OpenMP), tensorflow-model-optimization when
# first imported (TF_USE_LEGACY_KERAS=1: a worker that imported TensorFlow before any call of
# core.keras.load, then ran a first QAT export, saw it "leak"). Not a leak of the CLI call.
SET_BY_LIBRARIES = frozenset({"TF_CPP_MIN_LOG_LEVEL", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK",
                              "TF_USE_LEGACY_KERAS"})


def _process_state() -> dict[str, object]:
    """What one CLI call must not change for the next one in the same process (but
    :data:`SET_BY_LIBRARIES`)."""
    import signal

    state: dict[str, object] = {
        "cwd": os.getcwd(),
        "environ": {k: v for k, v in os.environ.items() if k not in SET_BY_LIBRARIES},
        "signals": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)},
    }
    state["tf_loaded"] = "tensorflow" in sys.modules
    if state["tf_loaded"]:
        from edge_transfer.core.keras import load

        state["policy"] = load()[1].mixed_precision.global_policy().name
    return state


def run_main(*args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """``edge-transfer ARGS`` in this process through ``cli.main(argv)``, reported as
    :func:`run_cli` reports it (exit code, stdout, stderr), without its ~7 s of interpreter and
    TensorFlow start; ``env`` is set for the call only. Asserts the call left the process as it
    found it (working folder, environment, signal handlers, Keras' precision policy), so calls
    do not leak into each other. Output that native code writes to the file descriptors
    directly is not captured (use :func:`run_cli` where that matters, or where a crash must
    stay in a child)."""
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        return _run_main(args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_main(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    import contextlib
    import io

    from edge_transfer.cli import main

    before = _process_state()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:           # argparse's --help and --version
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    after = _process_state()
    if not before.pop("tf_loaded"):    # TensorFlow's first import sets variables and Keras
        before.pop("environ"), after.pop("environ"), after.pop("policy", None)
    after.pop("tf_loaded")
    changed = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    if "environ" in changed:
        env_a, env_b = changed.pop("environ")
        changed.update({k: (env_a.get(k), env_b.get(k))  # type: ignore[attr-defined]
                        for k in {*env_a, *env_b}  # type: ignore[misc]
                        if env_a.get(k) != env_b.get(k)})  # type: ignore[attr-defined]
    assert not changed, f"edge-transfer {' '.join(args)} changed the process: {changed}"
    return subprocess.CompletedProcess(["edge-transfer", *args], code, out.getvalue(),
                                       err.getvalue())


# Small but real: the budgets below keep pretrain + finetune (+ scratch baseline) near 30 s
# on two busy cores; the defaults of the CLI train longer.
FAST = {"learning_rate": 3e-3, "patience": 5, "verbose": 0}


@pytest.fixture(scope="session")
def pretrain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretrain run directory: small-cnn trained on digits:0-4 (extractor.keras inside)."""
    from edge_transfer.train.transfer import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("pretrain_run")
    return pretrain(PretrainConfig(data="digits:0-4", out=out, epochs=25, **FAST))


@pytest.fixture(scope="session")
def digits_run(pretrain_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory (see edge_transfer.train.runs): the digits:0-4 extractor fine-tuned on
    digits:5-9 with 10 images per class, with the scratch baseline and source accuracy."""
    from edge_transfer.train.transfer import FinetuneConfig, finetune

    out = tmp_path_factory.mktemp("digits_run")
    return finetune(FinetuneConfig(
        data="digits:5-9", out=out, backbone=str(pretrain_run), shots=10, epochs=20,
        finetune_epochs=10, baseline="scratch", source_data="digits:0-4", **FAST,
    ))


@pytest.fixture(scope="session")
def digits_bundle(digits_run: Path) -> Path:
    """The bundle of ``digits_run``'s shared export (every post-training variant)."""
    from runtime_export import bundle_folder

    return bundle_folder(digits_run)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Some model, fast: small-cnn trained one epoch on digits:5-9 (no fine-tune stage, no
    baseline), saved once. For tests that need a run directory and assert no accuracy."""
    from edge_transfer.train.transfer import FinetuneConfig, finetune

    out = tmp_path_factory.mktemp("tiny_run")
    return finetune(FinetuneConfig(data="digits:5-9", out=out, epochs=1, finetune_epochs=0,
                                   **FAST))


@pytest.fixture(scope="session")
def tiny_export(tiny_run: Path) -> Path:
    """The export folder of ``tiny_run``: the four core variants (tflite and onnx, fp32 and
    int8), exported once."""
    from edge_transfer.export.config import ExportConfig
    from edge_transfer.export.pipeline import export_run

    return export_run(tiny_run, ExportConfig(formats=("tflite", "onnx"),
                                             precisions=("fp32", "int8"),
                                             out=tiny_run.parent / "tiny-export")).out_dir


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: Path, tiny_export: Path) -> Path:
    """The bundle of ``tiny_export`` (tests that tamper with it copy it first)."""
    from edge_transfer.deploy.bundle import create_bundle

    return create_bundle(tiny_run, tiny_run.parent / "tiny-bundle", export_dir=tiny_export)

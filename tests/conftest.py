"""Shared fixtures: a fine-tuned digits run directory, built once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    """``edge-transfer ARGS`` in a subprocess of this interpreter, output captured."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "edge_transfer", *args],
        capture_output=True, text=True, timeout=timeout, env=env, **kwargs,
    )


# Small but real: the budgets below keep pretrain + finetune (+ scratch baseline) near 30 s
# on two busy cores; the defaults of the CLI train longer.
FAST = {"learning_rate": 3e-3, "patience": 5, "verbose": 0}


@pytest.fixture(scope="session")
def pretrain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretrain run directory: small-cnn trained on digits:0-4 (extractor.keras inside)."""
    from edge_transfer.transfer import PretrainConfig, pretrain

    out = tmp_path_factory.mktemp("pretrain_run")
    return pretrain(PretrainConfig(data="digits:0-4", out=out, epochs=25, **FAST))


@pytest.fixture(scope="session")
def digits_run(pretrain_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory (see edge_transfer.runs): the digits:0-4 extractor fine-tuned on
    digits:5-9 with 10 images per class, with the scratch baseline and source accuracy."""
    from edge_transfer.transfer import FinetuneConfig, finetune

    out = tmp_path_factory.mktemp("digits_run")
    return finetune(FinetuneConfig(
        data="digits:5-9", out=out, backbone=str(pretrain_run), shots=10, epochs=20,
        finetune_epochs=10, baseline="scratch", source_data="digits:0-4", **FAST,
    ))

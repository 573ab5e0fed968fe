"""Usable BatchNorm statistics after training from random weights, whatever the source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main


def test_recompute_batchnorm_takes_the_data_statistics() -> None:
    from edge_transfer.core.keras import load
    from edge_transfer.train.models import recompute_batchnorm

    _, keras = load()
    inputs = keras.Input((3,))
    trained = keras.layers.BatchNormalization(momentum=0.999, name="trained")
    frozen = keras.layers.BatchNormalization(name="frozen")
    model = keras.Model(inputs, frozen(trained(inputs)))
    frozen.trainable = False
    x = np.random.default_rng(0).normal(5.0, 2.0, (512, 3)).astype(np.float32)
    count = recompute_batchnorm(model, (x[i:i + 64] for i in range(0, len(x), 64)))
    assert count == 1 and trained.momentum == 0.999
    np.testing.assert_allclose(trained.moving_mean.numpy(), x.mean(axis=0), atol=1e-4)
    # the mean of per-batch variances: (n - 1) / n of the whole set's on average
    np.testing.assert_allclose(trained.moving_variance.numpy(), x.var(axis=0), rtol=0.05)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), np.zeros(3))


def test_chance_warning_names_batchnorm() -> None:
    from edge_transfer.train.health import chance_warning

    warning = chance_warning(0.98, 0.200, classes=5, val_size=135)
    assert warning is not None and "BatchNorm" in warning
    assert chance_warning(0.30, 0.200, classes=5, val_size=135) is None   # not trained either
    assert chance_warning(0.98, 0.600, classes=5, val_size=135) is None


@pytest.mark.slow
def test_untrained_keras_file_pretrains_above_chance(tmp_path: Path) -> None:
    """An untrained keras.applications MobileNetV3Small saved as .keras (BatchNorm momentum
    0.999), pretrained through the CLI: it evaluated at exactly chance (0.200) before. The
    file is the support matrix's (random weights, seeded; the smallest input, 32 px)."""
    from edge_transfer.report.support import save_application

    file = save_application("mobilenet_v3_small", tmp_path / "mobilenet_v3_small.keras")
    out = tmp_path / "run"
    result = run_main("pretrain", "--data", "digits:0-4", "--backbone", str(file), "--out",
                      str(out), "--epochs", "5", "--quiet")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy"] > 0.9 and metrics["test_accuracy"] > 0.9, metrics
    assert json.loads((out / "run.json").read_text())["warnings"] == []
    assert "BatchNorm" not in result.stderr
    # Its Rescaling layer scales pixels: fed 0..255, said once (test_backbone_files' case too).
    line = json.loads((out / "preprocessing.json").read_text())["input"]["line"]
    assert line.startswith("input: the model scales pixels itself (Rescaling"), line

"""pretrain -> finetune on the built-in digits tasks, and the run directory contract."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST, REPO_ROOT, run_cli

from edge_transfer.core.samples import decode
from edge_transfer.train.runs import Run

QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def test_pretrain_writes_an_extractor(pretrain_run: Path) -> None:
    from edge_transfer.train.models import is_flat, load_keras_model

    extractor = load_keras_model(pretrain_run / "extractor.keras")
    assert is_flat(extractor) and len(extractor.output.shape) == 2
    metrics = json.loads((pretrain_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95          # digits 0-4 are easy for the source task
    assert Run.open(pretrain_run).labels == ("0", "1", "2", "3", "4")


def test_finetune_10_shots_transfers(digits_run: Path) -> None:
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.90
    for key in ("val_accuracy", "scratch_test_accuracy", "source_accuracy_before",
                "source_accuracy_after"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["source_head"] == "pretrain"
    assert metrics["source_accuracy_before"] >= 0.95
    # The test split's top-1 per sample, for paired comparisons (transfer vs scratch).
    assert len(decode(metrics["test_predictions"])) == metrics["test_samples"]
    assert len(decode(metrics["scratch_test_predictions"])) == metrics["test_samples"]


def test_run_directory_contract(digits_run: Path) -> None:
    from edge_transfer.train.models import is_flat

    run = Run.open(digits_run)
    info = run.info
    raw = json.loads((digits_run / "run.json").read_text())   # the file's keys, unchanged
    assert set(raw["data"]) >= {"spec", "seed", "val_fraction", "test_fraction", "shots",
                                "fingerprint", "skip_bad_files", "sizes"}
    assert set(raw["strategy"]) == {"name", "class", "replicas"}
    assert info.data.shots == 10 and info.args["backbone"] and info.seed == 0
    assert {"tensorflow", "tf-keras", "numpy", "python"} <= set(info.versions)
    phases = info.seconds_by_phase            # where the wall time went
    assert phases is not None and set(phases) == {"data", "training", "evaluation"}
    assert phases["training"] > 0 and phases["evaluation"] > 0
    assert info.seconds is not None and sum(phases.values()) <= info.seconds + 1
    history = json.loads((digits_run / "history.json").read_text())
    assert {"head", "finetune", "scratch"} <= set(history)
    model = run.load_model()
    assert is_flat(model)
    x, y = run.split_arrays("test")
    assert x.dtype == np.float32 and x.shape[1:] == run.preprocessing.input_shape
    probs = model.predict(x, verbose=0)
    assert probs.shape == (len(y), 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probs.argmax(1) == y))
    assert accuracy == pytest.approx(run.metrics.test_accuracy, abs=1e-6)


def test_final_figures_read_each_split_once_per_model(pretrain_run: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation stays a small share of a few-shot run: the final figures read the whole
    test split once per final model (transfer, scratch) and a fixed subset of the source
    test split twice (before, after); the frozen head stage validates on features computed
    once, and logs the same val_loss Keras computes on the restored model."""
    from edge_transfer.data.dataset import split_dataset, stratified_sample
    from edge_transfer.data.load import load_dataset
    from edge_transfer.train import inference, transfer

    reads: list[tuple[str, int]] = []
    real = inference.predict_split

    def counting(model, split, pre, batch_size=256):  # type: ignore[no-untyped-def]
        reads.append((model.name, len(split)))
        return real(model, split, pre, batch_size)

    monkeypatch.setattr(inference, "predict_split", counting)
    out = transfer.finetune(transfer.FinetuneConfig(
        data="digits:5-9", out=tmp_path / "run", backbone=str(pretrain_run), shots=10,
        epochs=6, finetune_epochs=0, baseline="scratch", source_data="digits:0-4",
        source_samples=60, eval_samples=100, **FAST))
    splits = split_dataset(load_dataset("digits:5-9"), seed=0, val_fraction=0.15,
                           test_fraction=0.25, shots=10)
    val = stratified_sample(splits.val, 100, 0)                   # the fixed subset
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_samples"] == len(splits.test) > 200      # the whole test split
    assert len(decode(metrics["scratch_test_predictions"])) == len(splits.test)
    assert metrics["source_samples"] == 60 and metrics["val_samples"] == len(val)
    sizes = [n for _, n in reads]
    assert sizes.count(len(splits.test)) == 2                     # transfer, scratch: once each
    assert sizes.count(60) == 2                                   # source before, after
    assert sizes.count(len(val)) == 3  # head features once; final val of transfer and scratch
    # + train accuracy of both, + the training features finetune keeps as memory (--memory)
    assert len(reads) == 2 + 2 + 3 + 2 + 1 and (out / "memory.npz").exists()
    # The head stage's logged validation is what Keras computes on the restored model.
    history = json.loads((out / "history.json").read_text())["head"]
    best = int(history["best_epoch"][0]) - 1
    assert len(history["val_loss"]) == len(history["loss"])
    assert history["val_accuracy"][best] == pytest.approx(metrics["val_accuracy"], abs=1e-9)
    run = Run.open(out)
    model = run.load_model()
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, _ = model.evaluate(run.preprocessing.apply(val.x.read()), val.y, verbose=0)
    assert history["val_loss"][best] == pytest.approx(loss, rel=1e-4)


def test_l2sp_keeps_weights_closer_to_the_start(pretrain_run: Path, tmp_path: Path) -> None:
    from edge_transfer.train.models import load_keras_model
    from edge_transfer.train.transfer import FinetuneConfig, finetune

    start = load_keras_model(pretrain_run / "extractor.keras")
    drift = {}
    for alpha in (0.0, 1.0):
        out = finetune(FinetuneConfig(data="digits:5-9", out=tmp_path / f"a{alpha}",
                                      backbone=str(pretrain_run), shots=10, epochs=1,
                                      finetune_epochs=5, l2sp=alpha,
                                      **{**FAST, "patience": 50}))
        tuned = load_keras_model(out / "model.keras")
        drift[alpha] = sum(float(np.sum((tuned.get_layer(layer.name).kernel.numpy()
                                         - layer.kernel.numpy()) ** 2))
                           for layer in start.layers if hasattr(layer, "kernel"))
    assert 0 < drift[1.0] < drift[0.0]


def _cli_finetune(pretrain_run: Path, out: Path, *extra: str, env: dict | None = None):
    return run_cli("finetune", "--data", "digits:5-9", "--backbone", str(pretrain_run),
                   "--out", str(out), "--shots", "10", "--epochs", "3",
                   "--finetune-epochs", "2", "--quiet", *extra, env={**QUIET_TF, **(env or {})})


@pytest.mark.slow
def test_cli_mirrored_over_two_logical_cpus(pretrain_run: Path, tmp_path: Path) -> None:
    result = _cli_finetune(pretrain_run, tmp_path / "m", "--strategy", "mirrored",
                           "--cpu-devices", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout.strip().splitlines()[-1]
    strategy = Run.open(tmp_path / "m").info.strategy
    assert strategy is not None and strategy.class_name == "MirroredStrategy"
    assert strategy.replicas == 2
    assert Run.open(tmp_path / "m").load_model() is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _digits_folder(folder: Path) -> Path:
    """digits:5-9 as an image folder of 8x8 PNGs (one subfolder per class)."""
    from PIL import Image

    from edge_transfer.data.load import load_dataset

    ds = load_dataset("digits:5-9")
    for k, name in enumerate(ds.class_names):
        (folder / name).mkdir(parents=True)
        for i, pixels in enumerate(ds.x.read(np.flatnonzero(ds.y == k))):
            Image.fromarray(pixels[..., 0], "L").save(folder / name / f"{i}.png")
    return folder


@pytest.mark.slow
def test_cli_multiworker_two_local_processes(pretrain_run: Path, tmp_path: Path) -> None:
    """Two workers on a streamed image folder (no memory cache: files decoded per batch),
    each reading its own shard of the training images."""
    import subprocess

    folder = _digits_folder(tmp_path / "digits59")
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, **QUIET_TF, "PYTHONPATH": str(REPO_ROOT),
               "TF_CONFIG": json.dumps(tf_config), "EDGE_TRANSFER_MEMORY_CACHE_MB": "0"}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "edge_transfer", "finetune", "--data", str(folder),
             "--backbone", str(pretrain_run), "--out", str(tmp_path / f"w{index}"),
             "--shots", "10", "--epochs", "3", "--finetune-epochs", "2", "--quiet",
             "--strategy", "multiworker"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
    chief = Run.open(tmp_path / "w0")
    strategy = chief.info.strategy
    assert strategy is not None and strategy.name == "multiworker" and strategy.replicas == 2
    assert (chief.metrics.test_accuracy or 0) > 0.2      # it trained (5 classes: chance 0.2)
    assert not (tmp_path / "w1").exists()              # only the chief writes the run
    assert chief.info.data.spec == str(folder)

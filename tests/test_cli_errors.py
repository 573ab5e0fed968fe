"""Bad input: exit code 2, one line naming the problem and the fix, no traceback.

The cases run in this process through ``cli.main`` (:func:`conftest.run_main`); the last two
start the real command, for its exit code and its light ``--help``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, run_main
from PIL import Image


def _folder(root: Path, classes: int = 2, per_class: int = 4, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / f"class{c}" / f"{i}.png")
    return root


def _finetune(data: str, tmp_path: Path, *extra: str):
    return run_main("finetune", "--data", data, "--out", str(tmp_path / "run"), "--quiet",
                    "--epochs", "1", "--finetune-epochs", "0", *extra)


def _one_line_error(result, *words: str) -> str:
    assert result.returncode == 2, result.stderr[-1500:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_missing_folder(tmp_path: Path) -> None:
    _one_line_error(_finetune(str(tmp_path / "nope"), tmp_path), "does not exist", "folder")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _one_line_error(_finetune(str(tmp_path / "empty"), tmp_path), "no class subfolders")


def test_single_class(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "one", classes=1)
    _one_line_error(_finetune(str(folder), tmp_path), "1 class", ">= 2")


def test_unreadable_image_listed_then_skipped(tmp_path: Path) -> None:
    from edge_transfer.train.transfer import FinetuneConfig, finetune

    folder = _folder(tmp_path / "bad", per_class=6)
    (folder / "class1" / "broken.png").write_bytes(b"not a png")
    line = _one_line_error(_finetune(str(folder), tmp_path), "broken.png", "--skip-bad-files")
    assert "1 unreadable" in line
    # What --skip-bad-files sets.
    run = finetune(FinetuneConfig(data=str(folder), out=tmp_path / "run", epochs=1,
                                  finetune_epochs=0, skip_bad_files=True, verbose=0))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_samples"] > 0 and 0 <= metrics["test_accuracy"] <= 1


def test_shots_more_than_a_class_has(tmp_path: Path) -> None:
    _one_line_error(_finetune("digits:5-9", tmp_path, "--shots", "500"),
                    "--shots 500", "or fewer")


def test_unknown_backbone_lists_known_ones(tmp_path: Path) -> None:
    line = _one_line_error(_finetune("digits:5-9", tmp_path, "--backbone", "vgg99"), "vgg99")
    for name in ("small-cnn", "mobilenet_v2", "efficientnet_b0", "resnet50"):
        assert name in line


def test_reversed_class_range(tmp_path: Path) -> None:
    _one_line_error(_finetune("digits:7-3", tmp_path), "reversed", "3-7")


@pytest.mark.parametrize("args, words", [
    (("--backbone", "small-cnn", "--weights", "imagenet"), ("ImageNet", "--weights none")),
    (("--backbone", "mobilenet_v2", "--input-size", "16"), ("--input-size 32",)),
    (("--strategy", "multiworker"), ("TF_CONFIG",)),
    (("--backbone", "small-cnn", "--weights", "missing.h5"), ("missing.h5", "does not exist")),
])
def test_bad_options(tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]) -> None:
    _one_line_error(_finetune("digits:5-9", tmp_path, *args), *words)


def test_pretrain_on_missing_data(tmp_path: Path) -> None:
    result = run_cli("pretrain", "--data", str(tmp_path / "x.npz"), "--out", str(tmp_path / "r"))
    _one_line_error(result, "does not exist")


def test_help_explains_every_option() -> None:
    result = run_cli("finetune", "--help")
    assert result.returncode == 0
    for option in ("--l2sp", "--source-data", "--baseline", "--strategy", "--mixed-precision",
                   "--shots", "--augment", "--flip", "--unfreeze", "--weights", "--cut-layer"):
        assert option in result.stdout

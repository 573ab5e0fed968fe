"""The CSV manifest source (edge_transfer/data/sources/csv_manifest.py): ``path,label`` lines read
as a dataset, paths relative to the CSV and never outside its folder; a whole finetune runs on
one through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_transfer.core.errors import DataError
from edge_transfer.data.dataset import split_dataset
from edge_transfer.data.load import load_dataset


def _png(path: Path, value: int, size: int = 8) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8), mode="L").save(path)
    return path.name


def _manifest(root: Path, rows: list[str], header: bool = True) -> Path:
    text = ("path,label\n" if header else "") + "\n".join(rows) + "\n"
    (root / "m.csv").write_text(text)
    return root / "m.csv"


def _shapes(root: Path, per_class: int = 6) -> list[str]:
    """Images in one flat folder (the class is in the CSV, not in a subfolder name)."""
    rows = []
    for i in range(per_class):
        rows.append(f"img/c{i}.png,circle")
        _png(root / "img" / f"c{i}.png", 10 + i)
        rows.append(f"img/s{i}.png,square")
        _png(root / "img" / f"s{i}.png", 200 + i)
    return rows


def test_manifest_reads_labels_from_the_csv(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, _shapes(tmp_path))
    dataset = load_dataset(str(manifest))
    assert dataset.class_names == ("circle", "square")
    assert np.bincount(dataset.y).tolist() == [6, 6]
    pixels = dataset.x.read(np.arange(len(dataset)))
    assert pixels.shape == (12, 8, 8, 1)
    # Each image carries its own row's label: dark images are circles, bright ones squares.
    assert ((pixels.mean(axis=(1, 2, 3)) > 100) == (dataset.y == 1)).all()
    # Without a header, and read from another working folder: the same data.
    again = load_dataset(str(_manifest(tmp_path, _shapes(tmp_path), header=False)))
    assert again.fingerprint() == dataset.fingerprint()
    assert len(split_dataset(dataset, seed=0).train) > 0


@pytest.mark.parametrize("bad_path", ["../outside.png", "img/../../outside.png", "ABSOLUTE",
                                      "link/outside.png"])
def test_paths_leaving_the_folder_are_refused(tmp_path: Path, bad_path: str) -> None:
    root = tmp_path / "data"
    rows = _shapes(root)
    _png(tmp_path / "outside.png", 99)
    (root / "link").symlink_to(tmp_path, target_is_directory=True)
    bad_path = str(tmp_path / "outside.png") if bad_path == "ABSOLUTE" else bad_path
    manifest = _manifest(root, [*rows, f"{bad_path},circle"])
    with pytest.raises(DataError, match="leads outside the manifest's folder"):
        load_dataset(str(manifest))


@pytest.mark.parametrize("rows, words", [
    (["img/a.png"], "expected path,label"),
    (["img/a.png,cat,extra"], "expected path,label"),
    ([], "lists no images"),
    (["img/missing.png,cat", "img/also-missing.png,dog"], "unreadable"),
])
def test_bad_manifests_are_data_errors(tmp_path: Path, rows: list[str], words: str) -> None:
    with pytest.raises(DataError, match=words):
        load_dataset(str(_manifest(tmp_path, rows)))


def test_finetune_on_a_manifest_through_the_cli(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import run_main

    manifest = _manifest(tmp_path, _shapes(tmp_path, per_class=10))
    monkeypatch.chdir(tmp_path.parent)  # a relative spec is resolved once, for the run record
    result = run_main("finetune", "--data", os.path.relpath(manifest), "--out",
                      str(tmp_path / "run"), "--epochs", "1", "--finetune-epochs", "0", "--quiet")
    assert result.returncode == 0, result.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data"]["spec"] == str(manifest.resolve())
    assert (tmp_path / "run" / "labels.txt").read_text().split() == ["circle", "square"]

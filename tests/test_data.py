"""Data specs, splits and the preprocessing record, on the built-in digits data."""

from __future__ import annotations

import numpy as np
import pytest

from edge_transfer.core.errors import DataError
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.data.dataset import split_dataset
from edge_transfer.data.load import load_dataset


def test_digits_class_selection_renumbers_labels() -> None:
    ds = load_dataset("digits:5-9")
    assert ds.class_names == ("5", "6", "7", "8", "9")
    assert set(np.unique(ds.y)) == {0, 1, 2, 3, 4}
    assert ds.x.dtype == np.uint8 and ds.x.shape[1:] == (8, 8, 1)
    assert 850 < len(ds) < 950


def test_reversed_range_names_the_fix() -> None:
    with pytest.raises(DataError, match="write 3-7"):
        load_dataset("digits:7-3")


def test_split_is_stratified_reproducible_and_shots_cap_train() -> None:
    ds = load_dataset("digits:0-4")
    a = split_dataset(ds, seed=3, shots=10)
    b = split_dataset(ds, seed=3, shots=10)
    assert np.array_equal(a.train.x, b.train.x)
    assert np.bincount(a.train.y).tolist() == [10] * 5
    assert min(np.bincount(a.test.y)) >= 40
    with pytest.raises(DataError, match="--shots 500 is more than"):
        split_dataset(ds, seed=0, shots=500)


def test_preprocessing_resizes_converts_and_normalizes() -> None:
    pre = Preprocessing(height=16, width=16, channels=3, mean=(127.5,), std=(127.5,))
    out = pre.apply(np.full((2, 8, 8, 1), 255, np.uint8))
    assert out.shape == (2, 16, 16, 3) and out.dtype == np.float32
    assert np.allclose(out, 1.0)


def test_readme_lists_exactly_the_registered_sources() -> None:
    """The README's data kinds are the registry's: a new source module needs its README line,
    and a README line needs its module."""
    import re

    from conftest import REPO_ROOT

    from edge_transfer.data import sources

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Data", 1)[1].split("\n### ", 1)[0]
    listed = re.findall(r"^- `([^`]+)`:", section, re.MULTILINE)
    assert listed == [s.syntax for s in sources.registered()]
    help_text = sources.help_text()
    assert all(s.syntax in help_text for s in sources.registered())

"""Small digits models saved as run directories, for tests that build their own model.

>>> SPEC["spec"]
'digits:5-9'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPEC = {"spec": "digits:5-9", "seed": 0, "val_fraction": 0.25, "test_fraction": 0.25,
        "shots": None}


def digits_splits(size: int) -> tuple[Any, Any, Any, Any]:
    """(keras, dataset, splits, preprocessing) of SPEC at ``size`` px, Keras seeded with 0."""
    from edge_transfer.core.keras import load
    from edge_transfer.core.preprocessing import Preprocessing
    from edge_transfer.data.dataset import split_dataset
    from edge_transfer.data.load import load_dataset

    _, keras = load()
    keras.utils.set_random_seed(0)
    dataset = load_dataset(SPEC["spec"], image_size=(size, size))
    splits = split_dataset(dataset, seed=0, val_fraction=SPEC["val_fraction"],
                           test_fraction=SPEC["test_fraction"])
    return keras, dataset, splits, Preprocessing(size, size, channels=1)


def save_run(out: Path, model: Any, dataset: Any, preprocessing: Any) -> Path:
    """Write ``model`` as a run directory (model, labels, preprocessing, run.json of SPEC)."""
    from edge_transfer.train.runs import write_json

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    (out / "labels.txt").write_text("\n".join(dataset.class_names) + "\n")
    preprocessing.save(out / "preprocessing.json")
    write_json(out / "run.json", {"command": "test", "data": {
        **SPEC, "fingerprint": dataset.fingerprint()}})
    return out

"""The data a validation runs on: the bundle's own sample (the run's test split), or all of
``--data``, its labels mapped onto the model's by class name.

Not run as a doctest (it needs a bundle; tests/test_devices.py builds one):

>>> x, y = validation_data(open_bundle("bundles/target"), "digits:5-9")  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from edge_transfer.core.errors import DataError
from edge_transfer.core.records.paired import SampleIds
from edge_transfer.deploy.bundle import Bundle


def validation_data(bundle: Bundle, data: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels (the model's label indices) to validate on; a ``--data`` class the
    model does not know is a :class:`~edge_transfer.core.errors.DataError`."""
    if data is None:
        return bundle.validation_arrays()
    from edge_transfer.data.load import load_dataset

    pre, labels = bundle.manifest.preprocessing, bundle.manifest.labels
    dataset = load_dataset(data, image_size=(pre.height, pre.width))
    unknown = [n for n in dataset.class_names if n not in labels]
    if unknown:
        raise DataError(f"{data} has classes {unknown} the model does not know; its classes "
                        f"are {', '.join(labels)}: give --data a dataset whose class "
                        "names are among the model's labels")
    remap = np.array([labels.index(n) for n in dataset.class_names])
    return dataset.x.read(), remap[dataset.y]


def sample_ids(bundle: Bundle, data: str | None) -> SampleIds | None:
    """Which samples the rows' ``predictions`` were made on: the bundle's (the run's test
    split, as its manifest says), or all of ``--data``."""
    if data is None:
        return bundle.manifest.samples
    from edge_transfer.data.load import load_dataset

    pre = bundle.manifest.preprocessing
    dataset = load_dataset(data, image_size=(pre.height, pre.width))
    known = {name: i for i, name in enumerate(bundle.manifest.labels)}
    remap = np.array([known.get(n, -1) for n in dataset.class_names])
    return SampleIds.of(dataset.fingerprint(), "all", np.maximum(remap[dataset.y], 0))

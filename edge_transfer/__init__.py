"""edge-transfer: transfer learning that ends on a device.

The light install (``pip install edge-transfer``) runs models on a device; the workstation
install (``pip install "edge-transfer[train]"``) trains, quantizes and exports them.
Importing this package imports neither TensorFlow nor a runtime.

>>> import edge_transfer
>>> edge_transfer.load_dataset("digits:0-4").num_classes
5
"""

from edge_transfer.core import moved
from edge_transfer.core.errors import (
    BundleError,
    DataError,
    DeviceError,
    EdgeTransferError,
    ExportError,
    ModelError,
    UserError,
)
from edge_transfer.core.preprocessing import Preprocessing
from edge_transfer.data.dataset import Dataset, Splits, split_dataset
from edge_transfer.data.load import load_dataset

__version__ = "0.1.0"

moved.install()  # the module paths before issue 23 import for one release (core/moved.py)

__all__ = [
    "BundleError",
    "DataError",
    "Dataset",
    "DeviceError",
    "EdgeTransferError",
    "ExportError",
    "ModelError",
    "Preprocessing",
    "Splits",
    "UserError",
    "__version__",
    "load_dataset",
    "split_dataset",
]

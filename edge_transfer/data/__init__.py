"""data: datasets and where they come from.

Loading a ``--data`` spec (``load``: ``load_dataset``), the ``Dataset`` type, its splits and
the built-in datasets (``dataset``), one module per kind of spec (``sources/``), image files
and folders (``image_files``), ``.npz`` files (``npz_file``), the IDX reader and the lazy
image stack (``idx``, ``images``), Fashion-MNIST's finder (``fashion_mnist``) and the tf.data
input pipeline (``tfdata``).

May import: ``core``.
"""

from edge_transfer.core.moved import forward

# Before issue 23 this was the module now at edge_transfer.data.dataset: its names still import
# from here for one release, with a DeprecationWarning.
__getattr__ = forward(__name__, "edge_transfer.data.load", "edge_transfer.data.dataset",
                      "edge_transfer.data.image_files", "edge_transfer.data.npz_file")

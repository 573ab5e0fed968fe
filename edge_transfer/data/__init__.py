"""data: datasets and where they come from.

The ``Dataset`` type, ``load_dataset`` and the splits (``dataset``), one module per kind of
``--data`` spec (``sources/``), the IDX and image-file readers (``idx``, ``images``),
Fashion-MNIST's finder (``fashion_mnist``) and the tf.data input pipeline (``tfdata``).

May import: ``core``.
"""

from edge_transfer.core.moved import forward

# Before issue 23 this was the module now at edge_transfer.data.dataset: its names still import
# from here for one release, with a DeprecationWarning.
__getattr__ = forward(__name__, "edge_transfer.data.dataset")

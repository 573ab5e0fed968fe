"""data: datasets and where they come from.

The ``Dataset`` type, ``load_dataset`` and the splits (``dataset``), one module per kind of
``--data`` spec (``sources/``), the IDX and image-file readers (``idx``, ``images``),
Fashion-MNIST's finder (``fashion_mnist``) and the tf.data input pipeline (``tfdata``).

May import: ``core``.
"""

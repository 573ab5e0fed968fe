"""core: the vocabulary every other layer shares.

Typed errors (``errors``), the typed JSON records (``records``), intervals and paired tests
(``stats``), per-sample predictions (``samples``), the preprocessing record
(``preprocessing``), latency measured one way (``latency``), atomic writes (``atomic``),
Ctrl-C handling (``interrupts``), config-field options (``fields``) and the Keras loader
(``keras``: TensorFlow only inside its functions).

May import: nothing of edge_transfer outside ``core`` (and no TensorFlow at import time).
"""

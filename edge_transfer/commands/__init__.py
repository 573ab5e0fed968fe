"""One module per CLI command; see :mod:`edge_transfer.cli`."""

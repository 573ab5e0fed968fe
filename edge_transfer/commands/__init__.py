"""One module per CLI command (see :mod:`edge_transfer.cli`); the modules whose names start
with ``_`` serve several commands: ``_options`` (options derived from the configs, and the
option groups commands share) and ``_pipeline`` (a pipeline file run as CLI commands)."""

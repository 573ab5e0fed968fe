"""``python -m edge_transfer`` is the ``edge-transfer`` command."""

import sys

from edge_transfer.cli import main

sys.exit(main())

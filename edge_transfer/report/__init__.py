"""report: what a run, its export and its devices came to, and whether it regressed.

The report (``build``: the record; ``markdown``: report.md; ``plots``: accuracy against size
and the confusion matrices; ``devices``: the per-device sections), per-class and paired
comparisons (``comparisons``), the regression gate of ``check`` (``gate``) and the backbone
support matrix (``support``).

May import: every layer below the commands (``core`` ... ``deploy``, ``exporters``,
``devices``).
"""

from edge_transfer.core.moved import forward

# Before issue 23 this was the module now split into edge_transfer.report.build, .markdown and
# .plots: its names still import from here for one release, with a DeprecationWarning.
__getattr__ = forward(__name__, "edge_transfer.report.build", "edge_transfer.report.markdown",
                      "edge_transfer.report.plots")

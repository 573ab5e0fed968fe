"""report: what a run, its export and its devices came to, and whether it regressed.

The report (``build``: markdown, plots; ``devices``: the per-device sections; ``plots``),
per-class and paired comparisons (``comparisons``), the regression gate of ``check``
(``gate``) and the backbone support matrix (``support``).

May import: every layer below the commands (``core`` ... ``deploy``, ``exporters``,
``devices``).
"""

"""export: a run's model as files in every format and precision, each checked against float.

What to export and the inputs every step shares (``config``: ``ExportConfig``), one variant
converted and checked (``variant``), the orchestration (``pipeline``: ``export_run``), the
worker processes (``workers``), int8 with chosen layers kept float (``keep_float``),
per-layer quantization diagnosis (``diagnose``, ``quant_signs``) and the hints printed after
an export (``advice``). The formats themselves, their checks and the QAT steps' judgement are
the top-level ``exporters`` package.

May import: ``core``, ``runtime``, ``data``, ``train``, ``exporters``.
"""

from edge_transfer.core.moved import forward

# Before issue 23 this was the module now at edge_transfer.export.pipeline: its names still import
# from here for one release, with a DeprecationWarning.
__getattr__ = forward(__name__, "edge_transfer.export.pipeline", "edge_transfer.export.config",
                      "edge_transfer.export.variant")

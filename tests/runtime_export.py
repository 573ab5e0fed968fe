"""The runtime and device tests' export and bundle: the suite's one shared export.

:func:`export_folder` is ``edge_transfer.export.pipeline.export_run`` of every post-training variant
(``_export_shared.export_post_training``: every precision of every registered exporter; QAT
and pruning train again, so only slow tests export them), computed
once per session and shared with the export tests; :func:`bundle_folder` bundles it once.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from _export_shared import export_post_training

# The four artifacts the device tests run (the bundle holds every post-training variant).
CORE = ("tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8")


def export_folder(run_dir: Path) -> Path:
    """The folder holding export.json of ``run_dir``'s shared export (exported once)."""
    return export_post_training(run_dir).out_dir


def ok_names(export_dir: Path) -> list[str]:
    """Names of the status-ok artifacts of an export folder, in export.json's order."""
    export = json.loads((export_dir / "export.json").read_text())
    return [a["name"] for a in export["artifacts"] if a["status"] == "ok"]


@functools.cache
def bundle_folder(run_dir: Path) -> Path:
    """``create_bundle`` of the shared export, once per session (tests that tamper copy it)."""
    from edge_transfer.deploy.bundle import create_bundle

    return create_bundle(run_dir, run_dir.parent / f"{run_dir.name}-bundle",
                         export_dir=export_folder(run_dir))

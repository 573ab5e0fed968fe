"""keras.applications families saved as ``.keras`` files, pretrained from the file (slow).

Each model is saved as a user saves one (random weights, the smallest input it accepts,
every argument at its default: the families with ``include_preprocessing`` keep their
scaling layers) and pretrained with ``--backbone FILE`` on digits 0-4 for a few epochs: it
reaches 0.8 test accuracy, or the run ends with a warning naming the cause. By default a
fixed sample of families with in-graph preprocessing runs (CI budget); set
``EDGE_TRANSFER_FILE_FAMILIES=all`` (or a comma-separated list of backbone names) for one
smallest model of every family. ``benchmarks/backbones.py --from-file`` is the full sweep
(the README matrix's "from a .keras file" column).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _families import chosen

# Rescaling + Normalization. MobileNetV3Small (Rescaling) from its file is
# tests/test_batchnorm.py's case: the same file, trained through the CLI, the same assertions.
SAMPLE = ("efficientnet_v2_b0",)


@pytest.mark.slow
@pytest.mark.parametrize("name", chosen("EDGE_TRANSFER_FILE_FAMILIES", SAMPLE))
def test_family_from_a_keras_file_trains_or_says_why(name: str, tmp_path: Path) -> None:
    from edge_transfer.report.support import FILE_ACCURACY, probe_file

    cell = probe_file(name, tmp_path, epochs=4)
    assert cell["status"] == "ok", cell
    assert (cell["input"] or "").startswith("input: "), cell
    if cell["test_accuracy"] <= FILE_ACCURACY:
        assert cell["warnings"], f"{name}: test accuracy {cell['test_accuracy']} and no warning"
    if name in SAMPLE:     # both scale pixels themselves: fed 0..255, and they learn
        assert cell["input"].startswith("input: the model scales pixels itself ("), cell
        assert cell["test_accuracy"] > FILE_ACCURACY, cell

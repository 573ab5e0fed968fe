"""The import paths the README documented before issue 23's move keep working for one release,
as the moved modules themselves, each with a DeprecationWarning that names the new path."""

from __future__ import annotations

import subprocess
import sys

import pytest

OLD_README_IMPORTS = (
    "from edge_transfer.data import load_dataset\n"
    "from edge_transfer.transfer import FinetuneConfig, finetune\n"
    "from edge_transfer.export import ExportConfig, export_run\n"
    "from edge_transfer.report import build_report\n"
    "import edge_transfer.bundle, edge_transfer.sources.npz\n"
)


def test_old_paths_import_the_moved_modules_with_a_warning() -> None:
    code = (
        "import warnings, sys\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        + "".join("    " + line + "\n" for line in OLD_README_IMPORTS.splitlines())
        + "import edge_transfer.train.transfer as t, edge_transfer.data.dataset as d\n"
        "import edge_transfer.export.pipeline as e, edge_transfer.deploy.bundle as b\n"
        "import edge_transfer.data.load as ld\n"
        "assert finetune is t.finetune and load_dataset is ld.load_dataset\n"
        "assert export_run is e.export_run and edge_transfer.bundle is b\n"
        "assert sys.modules['edge_transfer.transfer'] is t\n"
        "import edge_transfer.data.sources.npz as npz\n"
        "assert edge_transfer.sources.npz is npz\n"
        "for w in caught:\n"
        "    assert w.category is DeprecationWarning, w\n"
        "    print(w.message)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "edge_transfer.transfer moved to edge_transfer.train.transfer" in out
    assert "edge_transfer.data.load_dataset moved to edge_transfer.data.load.load_dataset" in out
    assert "edge_transfer.export.export_run moved to edge_transfer.export.pipeline." in out
    assert "edge_transfer.sources moved to edge_transfer.data.sources" in out
    assert out.splitlines()[-1] == "False"   # the shims import nothing heavy


def test_a_name_the_old_module_never_had_is_still_an_error() -> None:
    import edge_transfer.data

    with pytest.raises(AttributeError):
        edge_transfer.data.no_such_name  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        __import__("edge_transfer.no_such_module")

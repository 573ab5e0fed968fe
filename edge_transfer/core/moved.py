"""The import paths of the modules issue 23 moved into packages, kept for one release.

``edge_transfer.transfer``, ``edge_transfer.bundle``, ... still import, as the module they
became (the same object), with a DeprecationWarning naming the new path; a package named like
a module it replaced (``edge_transfer.data``, ``.export``, ``.report``) forwards that module's
names the same way (:func:`forward`). Release 0.3 drops them. Importing ``edge_transfer``
installs the finder (the one import-time side effect, and only for these names).

>>> import warnings
>>> install()
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     import edge_transfer.stats as old
>>> import edge_transfer.core.stats as new
>>> old is new, caught[0].category.__name__
(True, 'DeprecationWarning')
>>> new_name("edge_transfer.sources.npz")
'edge_transfer.data.sources.npz'
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

MOVED: dict[str, str] = {
    "edge_transfer.errors": "edge_transfer.core.errors",
    "edge_transfer.atomic": "edge_transfer.core.atomic",
    "edge_transfer.interrupts": "edge_transfer.core.interrupts",
    "edge_transfer.fields": "edge_transfer.core.fields",
    "edge_transfer.stats": "edge_transfer.core.stats",
    "edge_transfer.samples": "edge_transfer.core.samples",
    "edge_transfer.preprocessing": "edge_transfer.core.preprocessing",
    "edge_transfer.records": "edge_transfer.core.records",
    "edge_transfer.runtime.latency": "edge_transfer.core.latency",
    "edge_transfer.metadata": "edge_transfer.runtime.metadata",
    "edge_transfer.onnx_metadata": "edge_transfer.runtime.onnx_metadata",
    "edge_transfer.tflite_metadata": "edge_transfer.runtime.tflite_metadata",
    "edge_transfer.sources": "edge_transfer.data.sources",
    "edge_transfer.idx": "edge_transfer.data.idx",
    "edge_transfer.images": "edge_transfer.data.images",
    "edge_transfer.fashion_mnist": "edge_transfer.data.fashion_mnist",
    "edge_transfer.tfdata": "edge_transfer.data.tfdata",
    "edge_transfer.backbones": "edge_transfer.train.backbones",
    "edge_transfer.models": "edge_transfer.train.models",
    "edge_transfer.transfer": "edge_transfer.train.transfer",
    "edge_transfer.batchnorm": "edge_transfer.train.batchnorm",
    "edge_transfer.health": "edge_transfer.train.health",
    "edge_transfer.input_range": "edge_transfer.train.input_range",
    "edge_transfer.incremental": "edge_transfer.train.incremental",
    "edge_transfer.memory": "edge_transfer.train.memory",
    "edge_transfer.linear_head": "edge_transfer.train.linear_head",
    "edge_transfer.qat_layers": "edge_transfer.train.qat_layers",
    "edge_transfer.qat_scheme": "edge_transfer.train.qat_scheme",
    "edge_transfer.optimize": "edge_transfer.train.optimize",
    "edge_transfer.runs": "edge_transfer.train.runs",
    "edge_transfer.export_workers": "edge_transfer.export.workers",
    "edge_transfer.mixed": "edge_transfer.export.keep_float",
    "edge_transfer.diagnose": "edge_transfer.export.diagnose",
    "edge_transfer.quant_signs": "edge_transfer.export.quant_signs",
    "edge_transfer.steps": "exporters.steps",
    "edge_transfer.advice": "edge_transfer.export.advice",
    "edge_transfer.bundle": "edge_transfer.deploy.bundle",
    "edge_transfer.bundle_measure": "edge_transfer.deploy.measure",
    "edge_transfer.bundle_sample": "edge_transfer.deploy.sample",
    "edge_transfer.recommend": "edge_transfer.deploy.recommend",
    "edge_transfer.report_devices": "edge_transfer.report.devices",
    "edge_transfer.plots": "edge_transfer.report.plots",
    "edge_transfer.comparisons": "edge_transfer.report.comparisons",
    "edge_transfer.check": "edge_transfer.report.gate",
    "edge_transfer.support": "edge_transfer.report.support",
}


def new_name(old: str) -> str | None:
    """The module ``old`` became (a moved package's modules too), or None if it did not move."""
    for prefix, new in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return new + old[len(prefix):]
    return None


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; import it from there ({old} goes in release 0.3)",
                  DeprecationWarning, stacklevel=3)


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when it was imported under its new name."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        new = new_name(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Let the old paths import. First in line: no module is left at an old path, and a stale
    copy (an editable install of an older checkout) must not answer for it."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def forward(package: str, *modules: str) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` handing out the names of ``modules`` (the first that
    has it) with a warning: a package that took the place of a module
    (``from edge_transfer.data import load_dataset``). A name that is a submodule of
    ``package`` is not forwarded: ``from package import submodule`` must import it, even
    while one of ``modules`` is still being imported."""
    def __getattr__(name: str) -> Any:
        if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is None:
            for module in modules:
                target = importlib.import_module(module)
                if hasattr(target, name):
                    _warn(f"{package}.{name}", f"{module}.{name}")
                    return getattr(target, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__

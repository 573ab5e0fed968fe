"""The layering of the installed packages (README "Layout"), checked on the source's import
statements (module level and inside functions, every file of edge_transfer/, exporters/ and
devices/): no import cycle between modules, no private name or module imported across
packages, no import from a lower layer into a higher one, and no import of a path that does
not exist (a module moved by issue 23 is imported by its new path, not through the
deprecation shims).

The few violations left are listed in KNOWN with the reason; the test fails on any other, and
on a KNOWN entry that no longer occurs (remove it), so the list can only shrink.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOPS = ("edge_transfer", "exporters", "devices")

# Low to high: a package may import its own layer and the ones before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("edge_transfer.core",),
    ("edge_transfer.runtime",),
    ("edge_transfer.data", "edge_transfer"),   # the root __init__: the API facade over data
    ("edge_transfer.train",),
    ("exporters",),
    ("edge_transfer.export",),
    ("edge_transfer.deploy",),
    ("devices",),
    ("edge_transfer.report",),
    ("edge_transfer.commands", "edge_transfer.cli", "edge_transfer.__main__"),
)

# Violations left to untangle, each with the import that makes it (none today; an entry here
# must say why it cannot be fixed yet).
KNOWN: set[str] = set()


@dataclass(frozen=True)
class Import:
    importer: str
    target: str            # the project module imported (or that the name is taken from)
    name: str | None       # the name imported from it, if any
    line: int


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for top in TOPS:
        for f in (root / top).rglob("*.py"):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = f
    return found


def bound_names(init: Path) -> set[str]:
    """Names a package's ``__init__`` binds itself (not those its ``__getattr__`` forwards)."""
    names = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names - {"__getattr__"}


def imports(mods: dict[str, Path]) -> tuple[list[Import], list[str]]:
    """Every import of a project module, and the imports of paths that do not exist."""
    found, missing = [], []
    for m, f in mods.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text())):
            pairs: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                pairs = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = m.split(".") if is_pkg else m.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                pairs = [(base, a.name) for a in node.names]
            for target, name in pairs:
                if target.split(".")[0] not in TOPS:
                    continue
                where = f"{m}:{node.lineno}"
                if target not in mods:
                    missing.append(f"{where} imports {target}, which does not exist")
                    continue
                if name is not None and f"{target}.{name}" in mods:
                    target, name = f"{target}.{name}", None
                elif name is not None and mods[target].name == "__init__.py" \
                        and name != "*" and name not in bound_names(mods[target]):
                    missing.append(f"{where} imports {name} from {target}, which does not bind "
                                   "it (a moved module's old path? import its new one)")
                if target != m:
                    found.append(Import(m, target, name, node.lineno))
    return found, missing


def package_of(module: str) -> str:
    """The package a module belongs to for layering: its layer entry (longest match)."""
    entries = [e for layer in LAYERS for e in layer]
    matches = [e for e in entries if module == e or module.startswith(e + ".")]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS")
    return max(matches, key=len)


def layer_of(module: str) -> int:
    package = package_of(module)
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def cycles(mods: dict[str, Path], edges: list[Import]) -> list[str]:
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for e in edges:
        graph[e.importer].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[str] = []

    def visit(v: str) -> None:    # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append("cycle: " + " <-> ".join(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(root: Path = ROOT) -> set[str]:
    mods = modules(root)
    edges, missing = imports(mods)
    found = set(missing) | set(cycles(mods, edges))
    for e in edges:
        a, b = package_of(e.importer), package_of(e.target)
        if a == b:
            continue
        private = [p for p in e.target.split(".") if p.startswith("_") and p != "__init__"]
        if private or (e.name and e.name.startswith("_") and not e.name.startswith("__")):
            found.add(f"private: {e.importer} imports {e.target}"
                      f"{'.' + e.name if e.name else ''} across packages ({a} -> {b})")
        if layer_of(e.importer) < layer_of(e.target):
            found.add(f"upward: {e.importer} ({a}) imports {e.target} ({b})")
    return found


def test_the_packages_import_one_way() -> None:
    found = violations()
    new = sorted(found - KNOWN)
    gone = sorted(KNOWN - found)
    assert not new, "layering violations:\n" + "\n".join(new)
    assert not gone, "fixed, remove from KNOWN:\n" + "\n".join(gone)


@pytest.mark.parametrize("plant, expected", [
    ("edge_transfer/core/stats.py", "upward: edge_transfer.core.stats (edge_transfer.core) "
                                    "imports edge_transfer.train.models"),
    ("edge_transfer/train/models.py", "cycle: "),
    ("devices/local.py", "private: devices.local imports edge_transfer.train.models._x"),
    ("edge_transfer/report/gate.py", "imports edge_transfer.transfer, which does not exist"),
])
def test_a_planted_violation_is_found(tmp_path: Path, plant: str, expected: str) -> None:
    """Each rule fails on an import planted in a copy of the tree."""
    import shutil

    for top in TOPS:
        shutil.copytree(ROOT / top, tmp_path / top,
                        ignore=shutil.ignore_patterns("__pycache__", "*.npz", "*.toml"))
    lines = {
        "edge_transfer/core/stats.py": "\ndef _p():\n    from edge_transfer.train import models\n",
        "edge_transfer/train/models.py":
            "\ndef _p():\n    from edge_transfer.train import transfer\n",
        "devices/local.py": "\ndef _p():\n    from edge_transfer.train.models import _x\n",
        "edge_transfer/report/gate.py": "\ndef _p():\n    from edge_transfer.transfer import x\n",
    }
    target = tmp_path / plant
    target.write_text(target.read_text() + lines[plant])
    assert any(expected in v for v in violations(tmp_path) - KNOWN), expected
    assert not violations(ROOT) - KNOWN


FIRST_IMPORT = """
import importlib, sys
ours, failed = {"edge_transfer", "exporters", "devices"}, []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ours]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
"""


def test_each_module_of_a_forwarding_package_imports_first() -> None:
    """A package whose ``__getattr__`` forwards the old names (:func:`edge_transfer.core.moved.
    forward`) runs that hook for ``from package import submodule`` too, before Python loads
    the submodule: each module of such a package must import in a process that has imported
    nothing of the project yet (``report.markdown`` imported first once failed: the hook
    imported ``report.build``, which imports ``markdown``). Cycles the import order cannot
    hide are :func:`test_the_packages_import_one_way`'s."""
    import subprocess
    import sys

    found = modules()
    forwarding = {name for name, path in found.items()
                  if path.name == "__init__.py" and "forward(" in path.read_text()}
    names = sorted(n for n in found if n.rpartition(".")[0] in forwarding)
    assert names, "no package forwards old names: drop this test with core/moved.py"
    proc = subprocess.run([sys.executable, "-c", FIRST_IMPORT, *names], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", proc.stdout

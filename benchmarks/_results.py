"""Where benchmark results go, and how they name paths: relative to the repository.

A result file is committed and read on other machines, so it never holds this machine's
absolute paths: a path inside the repository is written relative to its root, one outside
(a temporary run folder) as ``<outside>/NAME``.

>>> repo_path(ROOT / "edge_transfer" / "configs" / "demo.toml")
'edge_transfer/configs/demo.toml'
>>> repo_path("/tmp/tmpab12/target")
'<outside>/target'
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def repo_path(path: str | Path) -> str:
    """``path`` relative to the repository root, or ``<outside>/NAME``."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(ROOT):
        return resolved.relative_to(ROOT).as_posix()
    return f"<outside>/{resolved.name}"


def write_result(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON atomically (folders made), through edge_transfer.core.atomic."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from edge_transfer.train.runs import write_json

    path = Path(path)
    write_json(path, data, parents=True)
    return path


def machine() -> dict[str, Any]:
    """What the figures were measured on, with the load when the benchmark started.

    These machines are shared: a load average above the core count means the timings are
    slower than on an idle machine (ratios measured in one run stay comparable).

    >>> sorted(machine())
    ['commit', 'cores', 'load_average_1min', 'machine', 'python']
    """
    return {"python": platform.python_version(), "machine": platform.machine(),
            "cores": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "commit": _commit()}


def _commit() -> str | None:
    """The repository's HEAD commit the figures were measured at (None outside git)."""
    import subprocess

    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    return done.stdout.strip() or None

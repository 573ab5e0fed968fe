"""The code stays ruff-clean and type-checks (both configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_helpers_are_imported_one_way() -> None:
    """``from conftest import ...`` (pytest puts tests/ on sys.path), never ``tests.conftest``:
    two spellings load two copies of a module, and of its caches."""
    import re

    offenders = [p.name for p in sorted((REPO_ROOT / "tests").glob("*.py"))
                 if re.search(r"^\s*(from|import) tests\.", p.read_text(), re.MULTILINE)]
    assert not offenders, offenders

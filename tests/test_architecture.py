"""The house rules, checked: layers and forbidden imports (import-linter), lint, format, types.

Each is configured in pyproject.toml; a failure names the file and line to fix.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    located = shutil.which(name)
    if located is None:
        pytest.fail(f"{name} is not installed: README's setup command installs it with the dev extras")
    return located


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_import_contracts_hold() -> None:
    done = _run(_tool("lint-imports"), "--no-cache")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_import_cycles_between_packages() -> None:
    """Every package of consortia/ against every other: no two import each other, even lazily."""
    from grimp import build_graph

    graph = build_graph("consortia")
    packages = sorted(m for m in graph.modules if m.count(".") == 1)
    cycles = [
        (a, b)
        for i, a in enumerate(packages)
        for b in packages[i + 1 :]
        if graph.chain_exists(a, b, as_packages=True) and graph.chain_exists(b, a, as_packages=True)
    ]
    assert cycles == []


def test_no_import_cycles_between_modules() -> None:
    from grimp import build_graph

    graph = build_graph("consortia")
    cyclic = sorted(m for m in graph.modules if _in_cycle(graph, m))
    assert cyclic == [], f"modules on an import cycle: {cyclic}"


def _in_cycle(graph, module: str) -> bool:  # type: ignore[no-untyped-def]
    return any(graph.chain_exists(imported, module) for imported in graph.find_modules_directly_imported_by(module))


def test_ruff_lint_is_clean() -> None:
    done = _run(_tool("ruff"), "check", "consortia", "tests", "benchmarks")
    assert done.returncode == 0, done.stdout[-4000:]


def test_ruff_format_is_clean() -> None:
    done = _run(_tool("ruff"), "format", "--check", "consortia", "tests", "benchmarks")
    assert done.returncode == 0, done.stdout[-4000:]


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    done = _run(_tool("mypy"))
    assert done.returncode == 0, done.stdout[-6000:]

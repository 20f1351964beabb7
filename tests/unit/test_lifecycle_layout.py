"""The lifecycle's layering, guarded as the policy's purity is: path modules never import
each other, `answer` or `driver`; only `proxy.app` imports the lifecycle package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE = ROOT / "proxy" / "lifecycle"
# Each path does one I/O step and returns the next step.
PATHS = {"hit", "collapse", "follow", "miss", "revalidate", "passthrough", "purge", "convert"}
# Below the paths: what they may share. `fill` (the fill runner) is used by miss and revalidate.
SHARED = {"steps", "context", "admit", "authorize", "streams", "fill"}


def lifecycle_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "proxy.lifecycle":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("proxy.lifecycle."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names
                      if a.name.startswith("proxy.lifecycle.")}
    return found


@pytest.mark.parametrize("name", sorted(PATHS))
def test_a_path_imports_no_other_path_nor_answer_nor_driver(name: str) -> None:
    imported = lifecycle_imports(LIFECYCLE / f"{name}.py")
    assert imported <= SHARED, f"{name} imports {sorted(imported - SHARED)}"


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_modules_import_no_path(name: str) -> None:
    imported = lifecycle_imports(LIFECYCLE / f"{name}.py")
    assert not imported & (PATHS | {"answer", "driver"}), f"{name} imports {sorted(imported)}"


def test_every_lifecycle_module_is_classified() -> None:
    modules = {p.stem for p in LIFECYCLE.glob("*.py")} - {"__init__"}
    assert modules == PATHS | SHARED | {"answer", "driver"}


def test_only_the_app_imports_the_lifecycle() -> None:
    for path in (ROOT / "proxy").rglob("*.py"):
        if LIFECYCLE in path.parents or path.name == "app.py":
            continue
        text = path.read_text()
        assert "proxy.lifecycle" not in text, f"{path.relative_to(ROOT)} imports the lifecycle"


def test_the_cache_status_is_recorded_in_one_place() -> None:
    writers = [p.relative_to(ROOT) for p in (ROOT / "proxy").rglob("*.py")
               if "STATUS_KEY] =" in p.read_text()]
    assert [str(p) for p in writers] == ["proxy/exchange.py"]


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for package in ("proxy", "origin")
            for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}

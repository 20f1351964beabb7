"""policy/ must stay pure: no I/O libraries, no clocks, nothing of ours outside policy."""

import ast
from pathlib import Path

import pytest

POLICY = Path(__file__).resolve().parents[2] / "proxy" / "policy"
FORBIDDEN = {"aiohttp", "diskcache", "time", "os", "asyncio", "socket", "sqlite3", "io",
             "subprocess", "random", "cachetools", "prometheus_client"}


@pytest.mark.parametrize("path", sorted(POLICY.glob("*.py")), ids=lambda p: p.name)
def test_policy_module_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            root = module.split(".")[0]
            assert root not in FORBIDDEN, f"{path.name} imports {module}"
            if root == "proxy":
                assert module.startswith("proxy.policy"), f"{path.name} imports {module}"

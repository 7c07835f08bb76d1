"""The shipped packages (the engine and the Airflow integration) hold no development tooling."""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "h2o_tasks", ROOT / "plugins" / "h2o_airflow")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_shipped_modules_never_import_devtools():
    offenders = [str(p.relative_to(ROOT)) for pkg in SHIPPED for p in pkg.rglob("*.py") if "devtools" in _imports(p)]
    assert offenders == []


def test_devtools_is_not_an_installed_package():
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert all(not inc.startswith("devtools") for inc in found["include"])
    assert not (ROOT / "h2o_tasks" / "devstack").exists()
    assert not (ROOT / "plugins" / "h2o_airflow" / "local_runs.py").exists()

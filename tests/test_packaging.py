"""Everything the service, the bundled plugins and the simulator import is a declared runtime
dependency: `pip install .` alone must run every command the README shows."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parents[1]
RUNTIME_PACKAGES = ("personalize", "plugins", "simulator")
#: Imported only from test suites (a plugin author's tests subclass its contract), never at run time.
TEST_SUPPORT = {Path("personalize/testing.py")}
#: Modules that run only with an optional extra installed (registered only then): their imports come from it.
EXTRA_FILES = {Path("plugins/text_embedding.py"): "embeddings"}


def _imported_modules() -> dict[str, str]:
    """Top-level module -> the first file that imports it (absolute imports only)."""
    found: dict[str, str] = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.relative_to(ROOT) in TEST_SUPPORT or path.relative_to(ROOT) in EXTRA_FILES:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalize(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}
    distributions = packages_distributions()
    missing = []
    for module, where in _imported_modules().items():
        if module in sys.stdlib_module_names or module in RUNTIME_PACKAGES or module == "__future__":
            continue
        owners = {_normalize(d) for d in distributions.get(module, [])}
        assert owners, f"{where} imports {module!r}, which no installed distribution provides"
        if not owners & declared:
            missing.append(f"{module} ({', '.join(sorted(owners))}, imported by {where})")
    assert not missing, "imported at run time but not in [project].dependencies: " + "; ".join(missing)


def test_extra_only_modules_name_a_declared_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for path, extra in EXTRA_FILES.items():
        assert (ROOT / path).exists() and extra in extras, (path, extra)

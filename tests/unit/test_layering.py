"""Layering: what importing a piece loads, and no import cycles in the core or the plugins."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "iii_state_core", *sorted(ROOT.glob("plugins/*/iii_state_*"))]
CLIENT_LIBRARIES = ("redis", "boto3", "botocore", "pymemcache")


def _loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(n for n in {names!r} if n in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_loading_every_plugin_imports_no_client_library() -> None:
    code = (
        "from iii_state_core.plugins import Registry\n"
        "registry = Registry()\n"
        "assert {'redis', 'dynamodb', 'memcached', 'kv'} <= set(registry.adapters), registry.adapters"
    )
    assert _loaded_after(code, CLIENT_LIBRARIES) == []


def test_opening_an_adapter_imports_its_client_library() -> None:
    code = "from iii_state_core.plugins import Registry\nRegistry().adapter('memcached').cls.load()"
    assert _loaded_after(code, CLIENT_LIBRARIES) == ["pymemcache"]


def test_importing_the_adapter_interface_does_not_load_the_front_end() -> None:
    front_end = ("iii_state_core.store", "iii_state_core.config", "iii_state_core.plugins", "yaml", "click")
    code = "from iii_state_core import Adapter, Capabilities, hookimpl\nimport iii_state_core.adapter"
    assert _loaded_after(code, front_end) == []


def _module_name(path: Path) -> str:
    parts = path.relative_to(_root_of(path)).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _root_of(path: Path) -> Path:
    for package in PACKAGES:
        if package in path.parents:
            return package.parent
    raise ValueError(path)


def _runtime_imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Modules imported when ``module`` runs: top level only, ``if TYPE_CHECKING`` left out."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {name for name in found if name in known and name != module}


def test_there_are_no_import_cycles() -> None:
    files = {_module_name(p): p for package in PACKAGES for p in package.rglob("*.py")}
    known = set(files)
    graph = {module: _runtime_imports(path, module, known) for module, path in files.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)

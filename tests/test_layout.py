"""The package's shape: folders in the order of the flow, no import circle, no import from a later folder."""
import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "labelwise"
# each folder (or ground-floor module) and its floor: a module may import from its own floor and those below
FLOORS = {"errors": 0, "progress": 0, "files": 0, "locks": 0, "settings": 0, "data": 1, "evaluation": 2, "model": 3,
          "predict": 4, "training": 5, "compress": 6, "analysis": 6, "select": 6, "serve": 7, "cli": 8, "__init__": 9,
          "__main__": 9}
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """labelwise modules that ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labelwise"):
            assert node.level == 0, f"{path}: relative import; the package imports by absolute names"
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("labelwise")}
    return found & known


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS["__init__"] if len(parts) == 1 else FLOORS[parts[1]]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}


def test_every_module_has_a_floor():
    for name in _modules():
        parts = name.split(".")
        assert len(parts) == 1 or parts[1] in FLOORS, f"{name}: add its folder to FLOORS in this test"


def test_no_import_from_a_later_floor():
    upward = [f"{a} ({_floor(a)}) imports {b} ({_floor(b)})" for a, targets in _graph().items()
              for b in targets if _floor(b) > _floor(a) and not b.startswith(a + ".")]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package's __init__ re-exporting its own module
                continue
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " → ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_no_module_is_too_long():
    long = {name: n for name, p in _modules().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_readme_package_layout_names_every_folder_and_module():
    readme = (PACKAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Package layout", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"\b([a-z_]+)(?:/|\.py)", block))
    present = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
               if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
               and p.stem not in ("__init__", "__main__")}
    assert present - named == set(), f"README's package layout misses {sorted(present - named)}"
    assert named - present == set(), f"README's package layout names what is not there: {sorted(named - present)}"


def test_every_flag_is_made_from_a_config_field():
    """Flags come from config dataclasses (labelwise.settings.add_flags): no hand-written add_argument elsewhere."""
    calls = [f"{path.relative_to(PACKAGE)}:{node.lineno}" for path in PACKAGE.rglob("*.py")
             if path.name != "settings.py"
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Attribute) and node.attr == "add_argument"]
    assert not calls, "hand-written flags (declare a setting() field and use add_flags): " + ", ".join(calls)

"""The direction of imports docs/design.md promises, checked on the source.

Run: python -m pytest -q tests/test_layout.py
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "adapters_geo"
# a section's config (training/config.py, methods/config.py) is what config/ and storage/ may read of those packages
SECTIONS_ONLY = tuple(f"{pkg}.{p.stem}" for pkg in ("training", "methods") for p in (PACKAGE / pkg).glob("*.py")
                      if p.stem not in ("config", "__init__"))
UPPER = ("training", "report", "experiments", "pipeline", "locking", "cli", "integrations", "api")
RULES = {  # module prefix -> prefixes it must not import
    "geometry": ("models", "adapters", "rollout", "tasks", "methods", "training", "report", "experiments", "pipeline",
                 "locking", "cli", "storage", "config", "integrations", "api"),
    "models": UPPER + ("methods",), "adapters": UPPER + ("methods",), "rollout": UPPER + ("methods",),
    "tasks": UPPER + ("methods",), "methods": UPPER,
    "config": tuple(u for u in UPPER if u != "training") + SECTIONS_ONLY + ("storage",),
    "storage": tuple(u for u in UPPER if u != "training") + SECTIONS_ONLY + ("rollout",),
    "training.loop": ("geometry", "report", "experiments", "pipeline", "locking", "cli", "integrations", "api"),
    "training": ("report", "experiments", "pipeline", "locking", "cli", "integrations", "api"),
    "report": ("training", "pipeline", "locking.continuation", "experiments", "cli", "integrations", "api"),
    "locking": ("report", "experiments", "pipeline", "cli", "integrations", "api"),
    "pipeline": ("experiments", "cli", "integrations", "api"),
    "integrations": ("experiments", "report", "cli", "api"),
    "": ("cli",),
}
ROOT = {"__init__", "api", "cli", "launch", "errors"}  # entry points and the one error type; the rest lives in packages


def internal_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adapters_geo."):
            found.add(node.module.removeprefix("adapters_geo."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("adapters_geo.") for a in node.names if a.name.startswith("adapters_geo.")}
    return found


MODULES = sorted(".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
                 for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", [m for m in MODULES if m not in ("cli", "__init__", "")])
def test_imports_follow_the_layout(module):
    path = PACKAGE / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = PACKAGE / module.replace(".", "/") / "__init__.py"
    matches = lambda name, prefix: prefix == "" or name == prefix or name.startswith(prefix + ".")
    forbidden = set()
    for prefix, banned in RULES.items():
        if matches(module, prefix):
            forbidden |= set(banned)
    bad = [dep for dep in internal_imports(path) for ban in forbidden if matches(dep, ban)]
    assert not bad, f"{module} imports {bad}"


def test_the_package_root_holds_only_entry_points_and_packages():
    """docs/design.md: a newcomer reads the architecture from the folders, so no new module lands at the root."""
    assert {p.stem for p in PACKAGE.glob("*.py")} == ROOT
    assert all((d / "__init__.py").is_file() for d in PACKAGE.iterdir() if d.is_dir() and d.name != "__pycache__")


def test_no_module_is_over_the_size_budget():
    long = {p.name: n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_trl_is_never_imported_at_module_level():
    """TRL is the benchmark-only extra: a module may import it inside a function, never at its top level."""
    top = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "trl" or n.startswith("trl.") for n in names):
                top[path.name] = names
    assert not top, top


def test_no_import_cycles_not_even_through_imports_inside_functions():
    """Every import of the package, module level or inside a function, as a graph: no module reaches itself.
    (config -> training.config -> runfolder -> config was one, until default_t0 moved to training/config.py.)"""
    def imports(path: Path) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adapters_geo") and not node.level:
                module = node.module.removeprefix("adapters_geo").lstrip(".")
                found |= {module} | {f"{module}.{a.name}".lstrip(".") for a in node.names}  # `from pkg import module` too
            elif isinstance(node, ast.Import):
                found |= {a.name.removeprefix("adapters_geo.") for a in node.names if a.name.startswith("adapters_geo.")}
        return found

    files = {".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}
    graph = {m: {d for d in imports(p) if d in files and d != m} for m, p in files.items()}

    def reaches(start: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            current = todo.pop()
            if current == start:
                return True
            if current not in seen:
                seen.add(current)
                todo += graph[current]
        return False

    assert [m for m in sorted(graph) if reaches(m)] == []

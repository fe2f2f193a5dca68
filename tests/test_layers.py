"""negres's layers import only downward, its modules form no cycle, and no negres import
hides inside a function.

The layers, lowest first (each package's ``__init__`` names its own): foundations, then
measures / tasks / models, training, evaluators (computing only), statistics, reporting
(every presenting hook), study (the command line's pipeline); ``negres/__init__.py`` is the
public facade above them all and ``main.py`` sits on top. A module may import its own
layer and those below it.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "negres"

# Layer of each top-level name under negres (a module or a package), lowest first.
LAYERS: dict[str, int] = {
    "errors": 0, "fields": 0, "files": 0, "results": 0, "seeds": 0, "sharding": 0,
    "measures": 1, "tasks": 1, "models": 1,
    "training": 2,
    "evaluators": 3,
    "statistics": 4,
    "reporting": 5,
    "study": 6,
}
LAYER_NAMES = ("foundations", "measures, tasks and models", "training", "evaluators",
               "statistics", "reporting", "study")


def module_files() -> dict[str, Path]:
    """Dotted module name -> its file, for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = module_files()


def imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The negres modules an import statement of ``module`` names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "negres"]
    if node.level:
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package = package[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base.split(".")[0] != "negres":
        return []
    # `from negres.x import y` imports the module negres.x.y when there is one.
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def import_statements() -> list[tuple[str, str, int, bool]]:
    """``(importer, imported, line, inside a function)`` for every negres import."""
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        in_function = {id(n) for f in ast.walk(tree)
                       if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                       for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in imported(module, node):
                    found.append((module, target, node.lineno, id(node) in in_function))
    return found


IMPORTS = import_statements()


def layer_of(module: str) -> int | None:
    """A module's layer; None for the package's facade ``negres`` itself."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return LAYERS[parts[1]]


def test_every_module_has_a_layer():
    unplaced = sorted({m.split(".")[1] for m in MODULES if "." in m} - set(LAYERS))
    assert not unplaced, f"modules of no layer (add them to LAYERS and the docs): {unplaced}"


def test_no_module_imports_a_layer_above_it():
    upward = []
    for importer, target, line, _ in IMPORTS:
        if importer == "negres":
            continue  # the facade names what the layers below it define
        low, high = layer_of(importer), layer_of(target)
        if high is None or high > low:
            upward.append(f"{importer}:{line} imports {target} "
                          f"({LAYER_NAMES[low]} -> "
                          f"{'the facade' if high is None else LAYER_NAMES[high]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    edges = collections.defaultdict(set)
    for importer, target, _, _ in IMPORTS:
        # A package's __init__ that re-exports its modules is not a cycle with them: a
        # module importing its own package's __init__ only is.
        if importer != target and target in MODULES:
            edges[importer].add(target)
    cycles = strongly_connected(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(sorted(c)) for c in cycles)


def test_no_negres_import_inside_a_function():
    inside = [f"{importer}:{line} imports {target}"
              for importer, target, line, in_function in IMPORTS if in_function]
    assert not inside, ("negres imports inside functions (hidden dependencies, often a "
                        "dodged cycle):\n" + "\n".join(inside))


@pytest.mark.parametrize("package", sorted({m.split(".")[1] for m in MODULES
                                            if MODULES[m].name == "__init__.py" and "." in m}))
def test_each_package_names_its_layer(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text())) or ""
    assert f"Layer: {LAYER_NAMES[LAYERS[package]]}." in doc, (
        f"negres/{package}/__init__.py's docstring should say 'Layer: "
        f"{LAYER_NAMES[LAYERS[package]]}.' and what it may import")


def test_the_checks_find_what_they_look_for():
    # The same graph functions on a made-up package: an upward edge and a cycle are seen.
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        {"a", "b", "c"}]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("def f():\n    from negres.study import experiment\n")
    node = tree.body[0].body[0]
    assert imported("negres.training.driver", node) == ["negres.study.experiment"]
    assert layer_of("negres.study.experiment") > layer_of("negres.training.driver")


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """The cycles of a directed graph: its strongly connected components of two or more
    nodes (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found

"""docs/architecture.md "The layers" is true of the code: read from the page, checked with ``ast``.

The page's first table puts every module and package of ``certkit/`` in one layer (bottom first);
its second lists the imports that reach a higher layer, each made when called (inside a function).
A module or package the page does not place, a name it places that is not there, an import at import
time that reaches up, an upward import the page does not list, or one it lists that the code no longer
makes: each fails here, so the page cannot drift from the code.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from conftest import REPO
from docs_runner import without_asides

PAGE = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "certkit"
LAYERS_HEADER = "| layer | modules | what they own |"
EXCEPTIONS_HEADER = "| module | imports, when called | why |"


def _names(cell: str) -> list[str]:
    """The modules a table cell names (`pkcs11/` is the package pkcs11), its asides left out."""
    return [name.rstrip("/") for name in re.findall(r"`([^`]+)`", without_asides(cell))]


def _table(header: str) -> list[list[str]]:
    lines = PAGE.read_text().split("\n## The layers\n", 1)[1].split("\n## ", 1)[0].splitlines()
    start = lines.index(header) + 2  # after the header and its |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def page_layers() -> dict[str, int]:
    """Each module's layer on the page: 0 for the first row (the bottom), 1 for the next, ..."""
    layers: dict[str, int] = {}
    for number, (_, modules, _) in enumerate(_table(LAYERS_HEADER)):
        for module in _names(modules):
            assert module not in layers, f"architecture.md puts {module} in two layers"
            layers[module] = number
    return layers


def page_exceptions() -> set[tuple[str, str]]:
    """(module, what it imports from a higher layer when called), as the page lists them."""
    listed = set()
    for module, targets, why in _table(EXCEPTIONS_HEADER):
        (name,) = _names(module)
        assert why, f"architecture.md gives no reason for {name}'s imports"
        listed |= {(name, target) for target in _names(targets)}
    return listed


def modules() -> dict[str, list[Path]]:
    """certkit's modules and packages (a package is one unit, as the page names it), with their files."""
    found: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" not in path.parts:
            found[path.relative_to(PACKAGE).with_suffix("").parts[0]].append(path)
    return found


def _typing_only(tree: ast.Module) -> set[int]:
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes |= {id(inner) for inner in ast.walk(node)}
    return nodes


def _in_functions(tree: ast.Module) -> set[int]:
    """The nodes that run when a function is called, not when the module is imported."""
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            nodes |= {id(inner) for inner in ast.walk(node)} - {id(node)}
    return nodes


def _imported(node: ast.AST, path: Path) -> list[str]:
    """The dotted certkit modules an import statement (or a lazy ``"certkit.x"`` / ``"certkit.x:attr"``
    string, as the package and the command table name what they load) refers to."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: from the file's own package
            package = ["certkit", *path.relative_to(PACKAGE).parts[:-1]]
            base = ".".join(package[:len(package) - node.level + 1])
        else:
            base = node.module or ""
            if node.module == "certkit":  # from certkit import names / __version__
                return [f"certkit.{alias.name}" for alias in node.names]
        module = f"{base}.{node.module}" if node.level and node.module else base
        return [module] if node.module else [f"{base}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) \
            and re.fullmatch(r"certkit(\.\w+)+(:\w+)?", node.value):
        return [node.value.partition(":")[0]]
    return []


def imports() -> list[tuple[str, str, bool, str]]:
    """Every import of one certkit module or package by another: (importer, imported, at import time,
    where), ``certkit.__version__`` counted as the package's ``__init__``."""
    units = modules()
    found = []
    for unit, paths in units.items():
        for path in paths:
            tree = ast.parse(path.read_text(), str(path))
            typing_only, called = _typing_only(tree), _in_functions(tree)
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                for dotted in _imported(node, path):
                    parts = dotted.split(".")
                    if parts[0] != "certkit" or len(parts) < 2:
                        continue
                    target = "__init__" if parts[1] == "__version__" else parts[1]
                    if target != unit and target in units:
                        where = f"{path.relative_to(REPO)}:{node.lineno}"
                        at_import = id(node) not in called and not isinstance(node, ast.Constant)  # a lazy name
                        found.append((unit, target, at_import, where))
    return found


def test_every_module_is_in_one_layer() -> None:
    placed, present = set(page_layers()), set(modules())
    assert not present - placed, f"architecture.md places no layer for {sorted(present - placed)}"
    assert not placed - present, f"architecture.md places {sorted(placed - present)}, which certkit/ lacks"


def test_no_module_imports_a_higher_layer_at_import_time() -> None:
    layer = page_layers()
    upward = [f"{where}: {unit} imports {target}" for unit, target, at_import, where in imports()
              if at_import and layer[target] > layer[unit]]
    assert not upward, "imports of a higher layer at import time:\n" + "\n".join(upward)


def test_every_upward_import_is_listed_with_its_reason() -> None:
    layer, listed = page_layers(), page_exceptions()
    made = defaultdict(list)
    for unit, target, _, where in imports():
        if layer[target] > layer[unit]:
            made[(unit, target)].append(where)
    unlisted = [f"{unit} -> {target} ({', '.join(made[unit, target])})" for unit, target in sorted(set(made) - listed)]
    assert not unlisted, "upward imports architecture.md does not list:\n" + "\n".join(unlisted)
    stale = sorted(listed - set(made))
    assert not stale, f"architecture.md lists upward imports the code does not make (or that do not reach up): {stale}"


def test_the_checks_see_imports() -> None:
    """The parser finds what is plainly there (so the tests above are not vacuous)."""
    found = {(unit, target, at_import) for unit, target, at_import, _ in imports()}
    assert ("ca", "issuing", False) in found and ("store", "inventory", True) in found
    assert ("cli", "__init__", True) in found and ("__init__", "ca", False) in found

"""The shape docs/architecture.md promises, kept: the library never imports click (only the
command line does), no module grows past a size a reader takes in at once, and no function runs
on for pages. Each check reads the source with ``ast``, so it names the offender."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "certkit"
COMMAND_LINE = ("cli/", "entry.py")  # the only places click may be imported
MAX_MODULE_LINES = 430  # architecture: "no module over ~400 lines"; past this, split it
MAX_FUNCTION_LINES = 60  # architecture: "no function over ~60 lines", its docstring not counted


def _modules() -> list[tuple[str, ast.Module, int]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        found.append((path.relative_to(PACKAGE).as_posix(), ast.parse(text), len(text.splitlines())))
    assert len(found) > 50, "the package was not found"
    return found


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_command_line_imports_click() -> None:
    offenders = [name for name, tree, _lines in _modules()
                 if "click" in _imports(tree) and not name.startswith(COMMAND_LINE)]
    assert offenders == []
    assert "click" in _imports(ast.parse((PACKAGE / "cli" / "__init__.py").read_text()))  # the check can see it


def test_no_module_is_too_long_to_read() -> None:
    too_long = [(name, lines) for name, _tree, lines in _modules() if lines > MAX_MODULE_LINES]
    assert too_long == []


def test_no_function_runs_on_for_pages() -> None:
    too_long = []
    for name, tree, _lines in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
                length = node.end_lineno - body[0].lineno + 1  # the code: a command's --help text is its docstring
                if length > MAX_FUNCTION_LINES:
                    too_long.append((name, node.name, length))
    assert too_long == []

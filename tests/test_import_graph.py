"""The package's modules import each other without a cycle, and refresh knows no per-key code.

The graph is read from the source with `ast`: every `import` and `from ... import` of a
liveinference module, at module level or inside a function (a lazy import is still an
edge), except those under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

import pytest

import liveinference

PACKAGE_DIR = os.path.dirname(liveinference.__file__)


def _module_names() -> Dict[str, str]:
    """{module name: file path} of every module in the package."""
    names = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for file in files:
            if not file.endswith(".py"):
                continue
            relative = os.path.relpath(os.path.join(folder, file), os.path.dirname(PACKAGE_DIR))
            parts = relative[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            names[".".join(parts)] = os.path.join(folder, file)
    return names


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imported(tree: ast.AST, module: str, is_package: bool, known: Set[str]) -> Set[str]:
    """The package modules `module` imports."""
    found: Set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {name for name in found if name in known and name != module}


def _graph() -> Dict[str, Set[str]]:
    names = _module_names()
    graph = {}
    for module, path in names.items():
        with open(path) as file:
            tree = ast.parse(file.read(), path)
        graph[module] = _imported(tree, module, path.endswith("__init__.py"), set(names))
    return graph


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _reachable(graph: Dict[str, Set[str]], start: str) -> Set[str]:
    seen: Set[str] = set()
    todo = [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_no_module_imports_itself_through_others():
    assert _cycles(_graph()) == []


def test_the_cycle_check_sees_lazy_imports():
    source = "def f():\n    from liveinference.b import g\n"
    known = {"liveinference.a", "liveinference.b"}
    assert _imported(ast.parse(source), "liveinference.a", False, known) == {"liveinference.b"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", ["liveinference.dofn", "liveinference.refresh.loader", "liveinference.refresh.slot"])
def test_the_inference_path_and_refresh_import_no_per_key_code(module):
    reached = _reachable(_graph(), module)
    assert not reached & {"liveinference.keyed_models", "liveinference.composition"}, reached

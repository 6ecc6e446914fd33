"""The shape of the code: layers without circles, modules a reader can hold."""

import ast
from pathlib import Path

TASKS = Path(__file__).resolve().parents[2] / "tasks"


def module_name(path):
    parts = path.relative_to(TASKS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path, modules):
    """The tasks modules PATH imports, anywhere in it (a function's own imports too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tasks"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tasks")}
    return out


def import_graph():
    paths = {module_name(p): p for p in TASKS.rglob("*.py")}
    return {name: imports_of(path, paths) - {name} for name, path in paths.items()}


def cycle(graph):
    """One import circle of GRAPH as a list of modules (empty: none)."""
    done, path = set(), []

    def visit(node):
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return []
        path.append(node)
        for target in sorted(graph.get(node, ())):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(node)
        return []

    for node in sorted(graph):
        found = visit(node)
        if found:
            return found
    return []


def test_the_cycle_finder_finds_a_circle_and_only_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_module_under_tasks_imports_itself_back_through_others():
    graph = import_graph()
    assert "tasks.steps.app" in graph and "tasks.shell" in graph["tasks.steps.app"]
    assert cycle(graph) == []

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


# The layers, bottom up (README: "Inside"): a module imports from its own layer or below.
LAYERS = [
    "shell output templates units host names results hostkeys once",
    "fields config settings source settings_docs",
    "run roles login",
    "facts readers plan declared engines",
    "installer release release_phase revision switch accounts site tls apt health backups offsite",
    "steps",
    "executor rollout lock balancer errors deploy_log hooks",
    "deploy provision status logs db history harden init destroy maintenance",
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names.split()}
LAYER["cli"] = len(LAYERS) + 1  # the installed program, above the menu (the package)


def layer_of(module):
    """The layer of a tasks module (the package itself is the menu, the top)."""
    parts = module.split(".")
    return len(LAYERS) if len(parts) == 1 else LAYER[parts[1]]


def test_every_module_imports_only_from_its_layer_or_below():
    graph = import_graph()
    assert {m.split(".")[1] for m in graph if "." in m} == set(LAYER), "a module's layer"
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
              if layer_of(b) > layer_of(a)]
    assert upward == []


def test_a_step_uses_the_layers_below_never_another_step_or_a_task():
    graph = import_graph()
    steps = [name for name in graph if name.startswith("tasks.steps.")]
    tasks = {"tasks.deploy", "tasks.provision", "tasks.status", "tasks.logs", "tasks.db",
             "tasks.history", "tasks.harden", "tasks.executor", "tasks.lock", "tasks.balancer"}
    assert len(steps) >= 8
    for step in steps:
        assert not {t for t in graph[step] if t.startswith("tasks.steps")} | \
            (graph[step] & tasks), step


def test_no_module_under_tasks_is_over_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in TASKS.rglob("*.py")}
    assert max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_a_new_step_is_one_module_and_one_line_in_the_stack(monkeypatch, capsys):
    from invoke import Config

    from tasks import status, steps
    from tasks.config import load
    from tasks.facts import Facts, script
    from tasks.logs import log_files
    from tasks.steps import firewall, packages
    from tests.unit import toy_step
    from tests.unit.answers import answer

    s = load(Config(overrides={"app": {}}))
    at = steps.STACK.index(firewall)
    monkeypatch.setattr(steps, "STACK", [*steps.STACK[:at], toy_step, *steps.STACK[at:]])
    assert toy_step.STEP in steps.provision()  # provision converges it, before the firewall
    needs = steps.needs(s)
    assert "toy-server" in needs.later and "toy" in needs.services
    facts_script = script(s, needs)
    assert "toy-server" in facts_script and "/etc/toy.conf" in facts_script
    installed = dict.fromkeys(needs.packages, True) | {"toy-server": False}
    (install,) = packages.plan(s, Facts(os_id="debian", apt_age=0, packages=installed,
                                        current_hash="c0ffee", needs=needs)).changes
    assert install.said == "installed toy-server"
    opened = Facts(ufw_active=True, ufw_rules={"allow 22/tcp", "allow 80/tcp"}, needs=needs)
    assert firewall.rule_changes(s, opened) == (["allow 7070/tcp"], [], False)
    assert "cat /run/toy/state" in status.status_script(s)
    down = status.parse_status("web1", s, answer("@@column toy\nstarting\n"))
    assert down.columns["toy"] == {"text": "starting", "ok": False}
    assert "toy is starting" in down.problems
    status.print_table([down])
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert "TOY" in header.split() and "starting!" in row.split()
    assert status.parse_status("web1", s, answer("@@column toy\nready\n")).columns["toy"] == \
        {"text": "ready", "ok": True}
    assert log_files(s, "toy") == ["/var/log/toy/toy.log"]


def test_the_names_fab_logs_takes_are_the_steps_logs_and_all():
    from invoke import Config

    from tasks import steps
    from tasks.config import load
    from tasks.fields import COMPONENTS

    s = load(Config(overrides={"app": {}}))  # COMPONENTS: no process may take these names
    assert set(COMPONENTS) == {*steps.logs(s), "all"}

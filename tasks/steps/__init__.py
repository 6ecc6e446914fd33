"""The stack, one step per part, in the order `provision` converges them.

Each step module holds a pure planner, `plan(settings, facts, ...) -> Plan`, and its
`STEP` (name, how it gathers what the planner needs, one-line help). tasks/plan.py
applies plans; tasks/provision.py runs the steps.

A step also declares, in its own module, what the rest of the tool serves it with
(tasks.declared): `needs(s)` (packages, services, files, ports), `logs(s)` (what
`fab logs -c NAME` reads) and `COLUMN` (its cell in `fab status`). The functions here
collect them from `STACK`: adding a part is one module and one line below.
"""

from tasks import facts
from tasks.declared import Needs
from tasks.steps import (
    app,
    database,
    firewall,
    nginx,
    offsite,
    packages,
    schedule,
    supervisor,
)

STACK = [packages, database, app, supervisor, schedule, nginx, firewall, offsite]


def provision():
    """The steps `provision` converges (and `deploy`, before its health check)."""
    return [step.STEP for step in STACK]


def needs(s):
    """What the stack's steps need on this host (settings S), merged in the stack's order.
    `later`: the packages only the steps after the app's use."""
    parts = [(step, step.needs(s)) for step in STACK if hasattr(step, "needs")]
    merged = {name: tuple(dict.fromkeys(x for _, n in parts for x in getattr(n, name)))
              for name in ("packages", "services", "files", "dirs", "links", "ports")}
    early = {p for step, n in parts if STACK.index(step) <= STACK.index(app)
             for p in n.packages}
    return Needs(**merged, later=tuple(p for p in merged["packages"] if p not in early))


def logs(s):
    """{name: files (or a Journal)} of every step's logs, for `fab logs -c NAME`."""
    out = {}
    for step in STACK:
        out.update(step.logs(s) if hasattr(step, "logs") else {})
    return out


def columns():
    """The steps' own columns of `fab status`, in the stack's order."""
    return [step.COLUMN for step in STACK if hasattr(step, "COLUMN")]


def gather(h, before=""):
    """The facts of host H for what its stack needs (tasks.facts.gather)."""
    return facts.gather(h, needs(h.settings), before)

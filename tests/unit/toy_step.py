"""A toy service, for tests only: what a new part of the stack (a Redis-like service) needs
to write in its own module to be installed, opened, checked and logged."""

from tasks.declared import Column, Needs
from tasks.plan import Command, Plan, Step


def needs(s):
    return Needs(packages=("toy-server",), services=("toy",), files=("/etc/toy.conf",),
                 ports=(("7070/tcp", None),))


def logs(s):
    return {"toy": ["/var/log/toy/toy.log"]}


def read_state(s, lines):
    state = "".join(lines).strip()
    return state or "down", "" if state == "ready" else f"toy is {state or 'down'}"


COLUMN = Column("toy", lambda s: "cat /run/toy/state 2>/dev/null", read_state)


def plan(s, facts):
    if facts.service("toy") == ("enabled", "active"):
        return Plan(ok="toy serves")
    return Plan([Command("started toy", "systemctl enable --now toy")])


STEP = Step("toy", lambda h: plan(h.settings, h.facts), "Run the toy service.")

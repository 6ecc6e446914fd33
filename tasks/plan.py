"""Plans: what a step would change, as data, run by one applier.

A step reads the facts and returns a `Plan`: the changes to make, in order, each
with the words its step line will say, or the reason nothing needs doing. `apply`
runs the plan; in a dry run it shows it instead (diffs of every file, what each
compound change would do) and runs nothing that alters the server. So no step
checks for a dry run, and every planner is tested without a server.
"""

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from invoke.exceptions import UnexpectedExit

from tasks.output import progress, say, unified_diff
from tasks.results import CHANGED, FAILED, OK
from tasks.shell import DeployError, explain_failure, q, sha256


@dataclass
class Command:
    """A shell script run as root (stopping at its first failing command)."""

    said: str  # what the step line says once it ran ("" when a neighbour says it)
    script: str
    timeout: int = None
    would: str = ""  # what a dry run says beyond the step line, if anything

    def apply(self, h):
        h.change(self.script, timeout=self.timeout)

    def preview(self, h):
        if self.would:
            say(h.name, f"would {self.would}")


@dataclass
class Upload:
    """A file written atomically with owner and mode; a dry run shows its diff.

    SHOWN turns content into what a diff may show (`mask`, `fingerprint`): never a
    secret. INSTALL, when given, writes it instead of `HostRun.put` (nginx validates first)."""

    said: str
    path: str
    content: str
    owner: str = "root"
    group: str = "root"
    mode: str = "0644"
    shown: Callable[[str], str] = None
    install: Callable = None  # (host, upload) -> None

    def apply(self, h):
        if self.install:
            self.install(h, self)
        else:
            h.put(self.content, self.path, self.owner, self.group, self.mode)

    def preview(self, h):
        if not differs(h.facts, self.path, self.content, self.owner, self.group, self.mode):
            return
        old = h.read(f"cat {q(self.path)} 2>/dev/null || true") \
            if self.path in h.facts.files else ""
        shown = self.shown or (lambda text: text)
        say(h.name, f"would write {self.path} ({self.owner}:{self.group} {self.mode})")
        h.show_diff(unified_diff(shown(old), shown(self.content), self.path))


@dataclass
class Call:
    """A compound change that decides as it goes (a checked release switch, a firewall
    enabled behind a dead-man switch): RUN(host) does it and may return what it did
    (replacing SAID); a dry run says WOULD.

    A READ_ONLY call (a proof that changes nothing) runs in a dry run too."""

    said: str
    run: Callable
    would: str | Callable = ""  # or WOULD(host) shows it (a diff, say)
    read_only: bool = False

    def apply(self, h):
        return self.run(h)

    def preview(self, h):
        if self.read_only:
            self.run(h)
        elif callable(self.would):
            self.would(h)
        elif self.would:
            say(h.name, f"would {self.would}")


@dataclass
class Probe:
    """A check whose answer is the step's `ok` reason (the site's health after a deploy)."""

    run: Callable  # (host) -> the reason, or raise DeployError
    in_dry_run: str  # the reason a dry run gives instead of probing


@dataclass
class Plan:
    changes: list = field(default_factory=list)
    ok: object = ""  # why nothing needs doing ("4 packages present"), or a Probe
    notes: list = field(default_factory=list)  # said in the step line whatever it did
    cleanup: Callable = None  # (host): undoes what the changes did, if one of them fails



def differs(facts, path, content, owner="root", group="root", mode="0644"):
    """Whether PATH on the server lacks exactly CONTENT with that owner and mode."""
    fact = facts.files.get(path)
    return (fact is None or fact.sha256 != sha256(content)
            or (fact.owner, fact.group, fact.mode.zfill(4)) != (owner, group, mode))


def upload(facts, said, path, content, owner="root", group="root", mode="0644", **extra):
    """[Upload(...)] if PATH differs from CONTENT (or its owner or mode), else []."""
    if not differs(facts, path, content, owner, group, mode):
        return []
    return [Upload(said, path, content, owner, group, mode, **extra)]


def mask(text):
    """KEY=VALUE lines with every value hidden, for showing secrets' diffs."""
    return "".join(line.split("=", 1)[0] + "=****\n" if "=" in line else line + "\n"
                   for line in text.splitlines())


def fingerprint(text):
    """A private key as shown in diffs: only its checksum."""
    return f"(secret, sha256 {sha256(text)[:16]})\n" if text else ""


def apply(h, plan, step=""):
    """Run PLAN on host H (or show it, in a dry run); return (status, message). On a
    terminal, a status line shows what STEP is doing while a change runs."""
    said = []
    for change in plan.changes:
        if h.dry_run:
            change.preview(h)
            said.append(change.said)
            continue
        doing = change.said or getattr(change, "would", "") or "working"
        with progress(h.name, f"{step}: {doing if isinstance(doing, str) else 'working'}"):
            try:
                said.append(change.apply(h) or change.said)
            except (DeployError, UnexpectedExit):
                if plan.cleanup:
                    plan.cleanup(h)
                raise
    if plan.changes:
        status, message = CHANGED, ", ".join(dict.fromkeys(s for s in said if s))
    elif isinstance(plan.ok, Probe):
        status, message = OK, plan.ok.in_dry_run if h.dry_run else plan.ok.run(h)
    else:
        status, message = OK, plan.ok
    return status, "; ".join(filter(None, [message, *plan.notes]))


class StepFailed(Exception):
    """Raised after a failed step was recorded, to stop the host's remaining steps."""


@contextmanager
def failing_as(h, step, began=None):
    """A DeployError (or a failed command) in the block is recorded as STEP failed (timed
    from BEGAN), and stops this host's run (StepFailed)."""
    try:
        yield
    except (DeployError, UnexpectedExit) as e:
        message = explain_failure(e.result) if isinstance(e, UnexpectedExit) else str(e)
        h.record(step.name, FAILED, message, began and time.monotonic() - began)
        raise StepFailed(step.name) from e


def run_step(h, step):
    """Plan STEP on H and apply the plan, recording ok/changed/failed and the time it took;
    a failure stops this host's run (StepFailed)."""
    began = time.monotonic()
    with failing_as(h, step, began):
        status, message = apply(h, step.plan(h), step.name)
    h.record(step.name, status, message, time.monotonic() - began)
    return status


def prepare(h, steps):
    """The local work of those STEPS that apply to H (a failure stops the run before the
    server is touched)."""
    for step in steps:
        if step.prepare and (not step.applies or step.applies(h)):
            with failing_as(h, step):
                step.prepare(h)


@dataclass(frozen=True)
class Step:
    """A named part of the stack: PLAN(host) -> Plan. DOC is its task's one-line help.
    APPLIES(host), when given, says whether the host's stack has this part at all (a step
    that does not apply says nothing). PREPARE(host), when given, is its local work, done
    before the server is read (hashing the app's folder). A step BESIDE_BACKGROUND may run
    while apt installs in the background what only later steps use (tasks.steps.packages);
    any other waits for that first."""

    name: str
    plan: Callable
    doc: str = ""
    applies: Callable = None
    prepare: Callable = None
    beside_background: bool = False

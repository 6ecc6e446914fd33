"""A run on one host: from Fabric's connection and config to a `HostRun`, the state a task
carries down through its steps (settings, facts, the deploy lock, what it did), changing
the server through its `Host` (transport and the dry-run switch)."""

from contextlib import contextmanager
from dataclasses import dataclass, field

from fabric import Connection
from invoke import Exit

from tasks.config import load
from tasks.host import Host, install_script, own_connect_kwargs
from tasks.hostkeys import secure
from tasks.once import once
from tasks.output import say
from tasks.results import Outcome, Run
from tasks.roles import for_host


@dataclass
class HostRun:
    """One run on one host: its Host, settings, facts and what the run did there.

    Only the plan applier (tasks.plan) and the switch it runs change the server; in a dry
    run nothing may (the Host refuses)."""

    host: Host
    settings: object  # tasks.settings.Settings, as this host sees them (tasks.roles)
    facts: object = None  # tasks.facts.Facts, once gathered
    hold: object = None  # tasks.lock.Hold, while the run holds the server's deploy lock
    source: object = None  # tasks.source.Source, once resolved
    site_answer: str = ""  # the site's healthy answer through nginx since the last change
    release_phase_done: bool = False  # its batch's release command ran on the first host
    facts_fresh: bool = False  # the step's last command read the facts too (tasks.provision)
    run: Run = field(default=None)  # its steps' outcomes, for the recap

    def __post_init__(self):
        self.run = self.run or Run(self.name)

    @property
    def name(self):
        return self.host.name

    @property
    def c(self):
        return self.host.c

    @property
    def dry_run(self):
        return self.host.dry_run

    def execute(self, command, sudo, timeout=None, **extra):
        return self.host.execute(command, sudo, timeout, **extra)

    def script(self, script, sudo=True, **extra):
        return self.host.script(script, sudo, **extra)

    def read(self, script, sudo=True, timeout=None, **explain):
        return self.host.read(script, sudo, timeout, **explain)

    def stream(self, script, out):
        return self.host.stream(script, out)

    def upload(self, content):
        return self.host.upload(content)

    def change(self, script, sudo=True, timeout=None, serving_unchanged=False, **explain):
        """Run a script that alters the server; the run's first change also marks its lock
        as changing (tasks.lock). SERVING_UNCHANGED: it cannot change what the site serves
        (old releases pruned, a candidate stopped), so the site's last healthy answer
        still stands. EXPLAIN: Host.change's. In a dry run the Host refuses it."""
        first = self.hold.take_first_change() if self.hold else ""
        if not serving_unchanged:
            self.site_answer = ""
        return self.host.change(f"{first}\n{script}", sudo, timeout, **explain)

    def put(self, content, path, owner="root", group="root", mode="0644"):
        """Write a file atomically (temp upload, install beside, rename) with owner and mode;
        missing parent directories are created (root, 0755).

        Example: `h.put(conf, "/etc/supervisor/conf.d/shop.conf")`"""
        self.change(install_script(self.upload(content), path, owner, group, mode))

    def record(self, step, status, message="", seconds=None):
        """Keep a step's outcome and print its line: `[host] step  status  message`, and how
        long it took when that was a tenth of a second or more."""
        self.run.outcomes.append(Outcome(step, status, message, seconds))
        took = f"  ({seconds:.1f} s)" if seconds is not None and seconds >= 0.1 else ""
        say(self.name, f"{step:<11} {status:<8} {message}".rstrip() + took)

    def result(self):
        """The run's result on this host (tasks.results.Run), with its SSH round trips."""
        self.run.round_trips = self.host.round_trips
        return self.run

    def show_diff(self, diff):
        if diff:
            say(self.name, "\n".join("    " + line for line in diff.rstrip("\n").split("\n")))


def open_host(c, dry_run=False):
    """The HostRun of connection C, with its validated settings."""
    if not hasattr(c, "host"):
        raise Exit("no host given: run it as `fab -H user@server TASK`", code=2)
    settings = once("settings", lambda: load(c.config))  # every host's, read once a run
    return HostRun(Host(c, dry_run), for_host(settings, c.config, c.original_host))


@contextmanager
def reach(h, host):
    """HOST (as given in app.roles) as a HostRun, reached the way H is (the same user's
    keys, known_hosts and sudo), for the block."""
    c = secure(Connection(host, config=h.c.config,
                          connect_kwargs=own_connect_kwargs(h.c.config)), h.settings.host_keys)
    try:
        yield HostRun(Host(c, h.dry_run), h.settings)
    finally:
        c.close()


def role_host(h, role):
    """The host of ROLE (app.roles: the database or the backup host), for a with-block."""
    return reach(h, h.settings.roles[role][0])


def database_host(h):
    """The database host (app.roles.db), for a with-block."""
    return role_host(h, "db")

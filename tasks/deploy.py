"""`deploy`, `rollback` and `releases`: ship a new version, go back, see what is there.

How a release goes live without downtime is tasks/switch.py's job; these tasks add
the steps around it: the whole stack converged first, the site's health after.
"""

import sys
from dataclasses import dataclass

from invoke import Exit, task

from tasks import steps
from tasks.executor import FromExecutor, Rolling
from tasks.output import LinePrefixer, say
from tasks.plan import Call, Plan, Probe, Step
from tasks.provision import BREAK_LOCK, DRY_RUN, converge
from tasks.release_phase import as_the_app
from tasks.results import report
from tasks.run import open_host
from tasks.shell import DeployError, q
from tasks.steps import gather
from tasks.steps.app import leftovers, restart_stale
from tasks.switch import expect_healthy, switch_to


def probe_site(h):
    """The site's health through nginx: the answer that proved the run's last change (a
    switch probes it), else a probe now."""
    if h.site_answer:
        return f"{h.site_answer} (probed after the last change)"
    expect_healthy(h, [(h.settings.site_url, "the site through nginx")])
    return h.site_answer


HEALTH = Step("health", lambda h: Plan(ok=Probe(probe_site, "not probed in a dry run")),
              "The site answers healthy through nginx, after the run's last change.",
              lambda h: h.settings.serves_app or h.settings.balancing)


def previous_release(f, current):
    older = [r for r in f.releases if r < current]
    return older[-1] if older else None


def rollback_plan(s, facts, to=None):
    """Back to release TO, or the one before the live one. A switch an interrupted run left
    unfinished (a candidate still running, programs on another release) is finished
    instead: a plain re-run of `fab rollback` never goes back one release too far."""
    current = facts.live_release
    unfinished = leftovers(s, facts) + restart_stale(s, facts)
    if unfinished and not to:
        return Plan(unfinished)
    target = to or previous_release(facts, current)
    if not target:
        raise DeployError("there is no earlier release to roll back to (see `fab releases`)")
    if target not in facts.releases:
        raise DeployError(f"no release {target!r} on this server (see `fab releases`)")
    if target == current:
        return Plan(unfinished, ok=f"{target} is already live")
    said = f"{current} -> {target}" + (
        f" (`{s.release_command}` is not run back: the data stays as the newer release left it)"
        if s.release_command else "")
    return Plan([Call(said, lambda h: switch_to(h, target, current),
                      f"switch {current} -> {target}")])


@task(klass=Rolling, help={"dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def deploy(c, dry_run=False, break_lock=False, batch=None):
    """Ship the app (local folder or git ref) as a release: zero downtime, health-checked.

    Runs provision's steps first (they do nothing when converged), then checks the
    site's health through nginx."""
    return converge(c, "deploy", [*steps.provision(), HEALTH], dry_run, break_lock, batch)


@task(klass=FromExecutor,
      help={"to": "the release to return to (default: the one before the live one)",
            "dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def rollback(c, to=None, dry_run=False, break_lock=False):
    """Switch back to the previous release (or --to RELEASE), health-checked, no downtime."""
    step = Step("rollback", lambda h: rollback_plan(h.settings, h.facts, to), "",
                lambda h: h.settings.runs_app)
    return converge(c, "rollback", [step], dry_run, break_lock)


@dataclass
class Executed:
    """The remote exit code of `fab exec` on one host."""

    exit_code: int
    changed = False

    @property
    def failed(self):
        return self.exit_code != 0

    def recap(self):
        return f"exit code {self.exit_code}"

    @staticmethod
    def report(results):
        """One host: nothing (its output is the command's); several: each one's exit code."""
        if len(results) > 1:
            report(results)


@task(name="exec", klass=FromExecutor)
def exec_(c, remainder=""):
    """Run the command after `--` in the live release, as the app runs: fab exec -- flask shell.

    As the app user, with its venv first on PATH and its environment, in the release folder;
    on a terminal of its own when fab has one. fab exits with the command's exit code."""
    command = remainder
    if not command:
        raise Exit("exec: give the command after --, like: fab -H web1 exec -- flask db current",
                   code=2)
    h = open_host(c)
    if not gather(h).live_release:
        raise DeployError("no release is live yet: run `fab deploy` first")
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    line = as_the_app(h.settings, h.settings.current, f"sh -c {q(command)}", terminal=terminal)
    if terminal:
        result = h.script(line, pty=True, in_stream=sys.stdin, hide=False)
    else:
        result = h.script(line, out_stream=LinePrefixer(h.name), err_stream=LinePrefixer(h.name),
                          hide=False)
    return Executed(result.exited)


@task
def releases(c):
    """List the releases on each host; the live one is marked with *."""
    h = open_host(c)
    f = gather(h)
    current = f.live_release
    for rid in reversed(f.releases):
        say(h.name, f"{'*' if rid == current else ' '} {rid}")
    if not f.releases:
        say(h.name, "no releases yet (run `fab deploy`)")

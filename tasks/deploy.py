"""`deploy`, `rollback` and `releases`: ship a new version, go back, see what is there.

How a release goes live without downtime is tasks/switch.py's job; these tasks add
the steps around it: the whole stack converged first, the site's health after.
"""

from invoke import task

from tasks.core import DeployError, say
from tasks.facts import gather
from tasks.plan import Call, Plan, Probe, Step
from tasks.provision import BREAK_LOCK, DRY_RUN, Rolling, converge, open_host
from tasks.steps import PROVISION
from tasks.switch import expect_healthy, switch_to


def probe_site(h):
    code, ms = expect_healthy(h, h.settings.site_url, "the site through nginx",
                              h.settings.health_timeout)
    return f"HTTP {code} in {ms:.0f} ms through nginx"


HEALTH = Step("health", lambda h: Plan(ok=Probe(probe_site, "not probed in a dry run")),
              "The site answers healthy through nginx.")


def previous_release(f, current):
    older = [r for r in f.releases if r < current]
    return older[-1] if older else None


def rollback_plan(s, facts, to=None):
    """Back to release TO, or the one before the live one."""
    current = facts.links.get(s.current, "").rpartition("/")[2]
    target = to or previous_release(facts, current)
    if not target:
        raise DeployError("there is no earlier release to roll back to (see `fab releases`)")
    if target not in facts.releases:
        raise DeployError(f"no release {target!r} on this server (see `fab releases`)")
    if target == current:
        return Plan(ok=f"{target} is already live")
    said = f"{current} -> {target}" + (
        f" (`{s.release_command}` is not run back: the data stays as the newer release left it)"
        if s.release_command else "")
    return Plan([Call(said, lambda h: switch_to(h, target, current),
                      f"switch {current} -> {target}")])


@task(klass=Rolling, help={"dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def deploy(c, dry_run=False, break_lock=False):
    """Ship the app (local folder or git ref) as a release: zero downtime, health-checked.

    Runs provision's steps first (they do nothing when converged), then checks the
    site's health through nginx."""
    return converge(c, [*PROVISION, HEALTH], dry_run, break_lock)


@task(help={"to": "the release to return to (default: the one before the live one)",
            "dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def rollback(c, to=None, dry_run=False, break_lock=False):
    """Switch back to the previous release (or --to RELEASE), health-checked, no downtime."""
    step = Step("rollback", lambda h: rollback_plan(h.settings, h.facts, to))
    return converge(c, [step], dry_run, break_lock)


@task
def releases(c):
    """List the releases on each host; the live one is marked with *."""
    h = open_host(c)
    f = gather(h)
    current = f.links.get(h.settings.current, "").rpartition("/")[2]
    for rid in reversed(f.releases):
        say(h.name, f"{'*' if rid == current else ' '} {rid}")
    if not f.releases:
        say(h.name, "no releases yet (run `fab deploy`)")

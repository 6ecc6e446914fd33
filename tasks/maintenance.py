"""`fab maintenance on|off`: nginx answers every request with a 503, `Retry-After` and a
plain page, but fab's own health probe from the server itself.

The site always carries the switch (templates/nginx-site.j2): a file in
/etc/nginx/fab-maintenance turns it on, so turning it on or off reloads nothing. Off removes
the switch alone: a request that found it on still finds its page. The page is
the app's own `maintenance.html` (in the live release, or its static folder), read as the
app's account (a link the app planted reaches nothing that account cannot read), or a plain
one with the message given.
"""

from invoke import Exit, task

from tasks.executor import FromExecutor
from tasks.plan import Command, Plan, Step
from tasks.provision import BREAK_LOCK, DRY_RUN, converge
from tasks.site import maintenance_off_script, maintenance_on_script


def plan(h, state, message):
    s = h.settings
    if not (s.serves_app or s.balancing):
        return Plan(ok="no site here (a database or worker host)")
    if state == "off":
        if not h.facts.maintenance:
            return Plan(ok="maintenance is off")
        return Plan([Command("maintenance off: the app answers again", maintenance_off_script(s))])
    return Plan([Command(f"maintenance on: every request gets a 503 (Retry-After), but "
                         f"{s.health_path} from the server", maintenance_on_script(s, message))])


@task(klass=FromExecutor, help={
    "state": "on or off",
    "message": "the plain page's text (when the app has no maintenance.html of its own)",
    "dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def maintenance(c, state, message="", dry_run=False, break_lock=False):
    """Turn maintenance on (503 + Retry-After for every request) or off."""
    if state not in ("on", "off"):
        raise Exit(f"maintenance: {state!r} is neither on nor off (fab maintenance on)", code=2)
    step = Step("maintenance", lambda h: plan(h, state, message))
    return converge(c, "maintenance", [step], dry_run, break_lock)

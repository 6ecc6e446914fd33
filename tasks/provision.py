"""`provision` and its steps: converge a server to the whole production stack."""

from invoke import Exit, task

from tasks import app, firewall, nginx, packages, supervisor
from tasks.core import CHANGED, FAILED, DeployError, Host, StepFailed, run_step, say
from tasks.deploy import acquire_lock, health, release_lock, rollback_step
from tasks.facts import gather
from tasks.settings import for_host

STEPS = [("packages", packages.converge), ("app", app.converge),
         ("supervisor", supervisor.converge), ("nginx", nginx.converge),
         ("firewall", firewall.converge)]
DRY_RUN = "show what would change, with diffs, running only read-only commands"
BREAK_LOCK = "take the deploy lock even if another run holds it (when that run is dead)"


def open_host(c, dry_run):
    if not hasattr(c, "host"):
        raise Exit("no host given: run it as `fab -H user@server TASK`", code=2)
    return Host(c, for_host(c.config, c.user), dry_run)


def converge(c, steps, dry_run=False, break_lock=False):
    """Run STEPS in order on one host, holding its deploy lock; gather facts again after
    any step that changed something."""
    h = open_host(c, dry_run)
    stage = "facts"
    try:
        gather(h)
        stage = "lock"
        acquire_lock(h, break_lock)
        for name, fn in steps:
            if run_step(h, name, fn) == CHANGED and not dry_run:
                gather(h)
    except StepFailed:
        pass
    except DeployError as e:
        h.record(stage, FAILED, str(e))
    finally:
        release_lock(h)
    return h


def step_task(name, fn, doc):
    @task(name=name, help={"dry-run": DRY_RUN})
    def one_step(c, dry_run=False):
        return converge(c, [(name, fn)], dry_run)
    one_step.__doc__ = doc
    one_step.body.__doc__ = doc
    return one_step


@task(help={"dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def provision(c, dry_run=False, break_lock=False):
    """Set up the whole stack: packages, app + venv, supervisor, nginx, firewall."""
    return converge(c, STEPS, dry_run, break_lock)


@task(help={"dry-run": DRY_RUN, "break-lock": BREAK_LOCK,
            "serial": "deploy N hosts at a time, stopping after a batch with a failure "
                      "(default: all hosts at once)"})
def deploy(c, serial=0, dry_run=False, break_lock=False):
    """Ship the app (local folder or git ref) as a release: zero downtime, health-checked.

    Runs provision's steps first (they do nothing when converged), then checks the
    site's health through nginx."""
    return converge(c, [*STEPS, ("health", health)], dry_run, break_lock)


@task(help={"to": "the release to return to (default: the one before the live one)",
            "dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def rollback(c, to=None, dry_run=False, break_lock=False):
    """Switch back to the previous release (or --to RELEASE), health-checked, no downtime."""
    return converge(c, [("rollback", lambda h: rollback_step(h, to))], dry_run, break_lock)


@task
def releases(c):
    """List the releases on each host; the live one is marked with *."""
    h = open_host(c, dry_run=True)
    f = gather(h)
    current = f.links.get(h.settings.current, "").rpartition("/")[2]
    for rid in reversed(f.releases):
        say(h.name, f"{'*' if rid == current else ' '} {rid}")
    if not f.releases:
        say(h.name, "no releases yet (run `fab deploy`)")


packages_task = step_task("packages", packages.converge,
                          "Install python3-venv, nginx, supervisor and ufw (apt).")
app_task = step_task("app", app.converge,
                     "Create the app user and upload the app as a release with its virtualenv.")
supervisor_task = step_task("supervisor", supervisor.converge,
                            "Configure the supervisor program that runs gunicorn.")
nginx_task = step_task("nginx", nginx.converge,
                       "Configure the nginx site (validated with nginx -t before it goes live).")
firewall_task = step_task("firewall", firewall.converge,
                          "Allow SSH and HTTP in ufw and enable it, proving SSH still works.")

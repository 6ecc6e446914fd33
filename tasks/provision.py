"""`provision` and its steps: converge a server to the whole production stack."""

from invoke import Exit, task

from tasks import app, firewall, nginx, packages, supervisor
from tasks.core import CHANGED, FAILED, DeployError, Host, StepFailed, run_step
from tasks.facts import gather
from tasks.settings import for_host

STEPS = [("packages", packages.converge), ("app", app.converge),
         ("supervisor", supervisor.converge), ("nginx", nginx.converge),
         ("firewall", firewall.converge)]
DRY_RUN = "show what would change, with diffs, running only read-only commands"


def open_host(c, dry_run):
    if not hasattr(c, "host"):
        raise Exit("no host given: run it as `fab -H user@server TASK`", code=2)
    return Host(c, for_host(c.config, c.user), dry_run)


def converge(c, steps, dry_run=False):
    """Run STEPS in order on one host; gather facts again after any step that changed."""
    h = open_host(c, dry_run)
    try:
        gather(h)
        for name, fn in steps:
            if run_step(h, name, fn) == CHANGED and not dry_run:
                gather(h)
    except StepFailed:
        pass
    except DeployError as e:
        h.record("facts", FAILED, str(e))
    return h


def step_task(name, fn, doc):
    @task(name=name, help={"dry-run": DRY_RUN})
    def one_step(c, dry_run=False):
        return converge(c, [(name, fn)], dry_run)
    one_step.__doc__ = doc
    one_step.body.__doc__ = doc
    return one_step


@task(help={"dry-run": DRY_RUN})
def provision(c, dry_run=False):
    """Set up the whole stack: packages, app + venv, supervisor, nginx, firewall."""
    return converge(c, STEPS, dry_run)


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

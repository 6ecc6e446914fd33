"""`fab harden`: SSH by key only and no root login (the step: tasks/steps/harden.py)."""

from invoke import task

from tasks.core import DeployError
from tasks.plan import StepFailed, run_step
from tasks.provision import open_host
from tasks.steps.harden import STEP


@task(help={"dry-run": "show what would change, running only read-only commands"})
def harden(c, dry_run=False):
    """Turn off SSH password and root login, once key login and sudo are proven to work."""
    if c.user == "root":
        raise DeployError("connect as the sudo user who keeps access (fab -H tom@host harden): "
                          "root login is what this turns off")
    h = open_host(c, dry_run)
    try:
        run_step(h, STEP)
    except StepFailed:
        pass
    return h.run

"""`fab harden`: SSH by key only and no root login (tasks/steps/harden.py), and security
updates installed daily (tasks/steps/updates.py)."""

from invoke import task

from tasks.executor import FromExecutor
from tasks.plan import StepFailed, run_step
from tasks.run import open_host
from tasks.shell import DeployError
from tasks.steps import harden as ssh_step
from tasks.steps import updates


@task(klass=FromExecutor,
      help={"dry-run": "show what would change, running only read-only commands"})
def harden(c, dry_run=False):
    """SSH by key only, no root login; security updates daily.

    Password and root login go off only once a key login and sudo are proven to work."""
    if c.user == "root":
        raise DeployError("connect as the sudo user who keeps access (fab -H tom@host harden): "
                          "root login is what this turns off")
    h = open_host(c, dry_run)
    try:
        for step in (ssh_step.STEP, updates.STEP):
            run_step(h, step)
    except StepFailed:
        pass
    return h.result()

"""`provision`, one task per step, and the runner they share: converge a server to the stack."""

import time

from invoke import task

from tasks import steps
from tasks.executor import Rolling
from tasks.lock import LockHeld, finish, lock_and_gather
from tasks.plan import StepFailed, prepare, run_step
from tasks.results import CHANGED, FAILED
from tasks.run import open_host
from tasks.shell import DeployError
from tasks.steps import gather, packages

DRY_RUN = "show what would change, with diffs, running only read-only commands"
BREAK_LOCK = ("take the deploy lock from another run (a dead run's is taken over by itself "
              "once its SSH session has ended; this is for the rest)")


def converge(c, action, steps, dry_run=False, break_lock=False, batch=None):
    """Run STEPS in order on one host, holding its deploy lock (not in a dry run, which
    changes nothing); gather facts again after any step that changed something, and wait
    for work started in the background before a step that needs it (and before the run
    ends). The run goes in the server's deploy log as ACTION (the task's name). Returns the
    host's Run.

    A converged run is one round trip: the lock, the log line and the facts. BATCH: the
    host's batch of the rollout (tasks.rollout), when the executor runs it."""
    began, h = time.monotonic(), open_host(c, dry_run)
    h.release_phase_done = bool(batch and batch.release_phase_done)
    try:
        prepare(h, steps)  # local work first: the log line names the source
        if dry_run:
            gather(h)
        else:
            lock_and_gather(h, action, break_lock)
        for step in steps:
            if step.applies and not step.applies(h):
                continue
            if not step.beside_background:
                settle(h)
            h.facts_fresh = False
            if run_step(h, step) == CHANGED and not dry_run and not h.facts_fresh:
                gather(h)
        settle(h)
    except StepFailed:
        pass
    except DeployError as e:
        h.record("lock" if isinstance(e, LockHeld) else "facts", FAILED, str(e))
    finally:
        finish(h, action)
        h.run.seconds = time.monotonic() - began
    return h.result()


def settle(h):
    """Wait for the work the run started in the background (apt installing what only the
    later steps use), and gather the facts again."""
    if h.facts.background and not h.dry_run:
        run_step(h, packages.BACKGROUND)
        gather(h)


def step_task(step):
    """`fab step.STEP`: converge that one step, e.g. `fab -H web1 step.nginx --dry-run`."""
    @task(name=step.name, klass=Rolling, help={"dry-run": DRY_RUN})
    def one_step(c, dry_run=False, batch=None):
        return converge(c, step.name, [step], dry_run, batch=batch)
    one_step.__doc__ = one_step.body.__doc__ = step.doc
    return one_step


@task(klass=Rolling, help={"dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def provision(c, dry_run=False, break_lock=False, batch=None):
    """Set up the whole stack: packages, database, app, programs, jobs, nginx, firewall, backups."""
    return converge(c, "provision", steps.provision(), dry_run, break_lock, batch)


STEP_TASKS = [step_task(step) for step in steps.provision()]

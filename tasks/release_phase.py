"""Commands in a release as the app runs: the release phase (app.release_command, once per
deploy, before traffic moves) and `fab exec`."""

from tasks.backups import backup_script
from tasks.run import database_host
from tasks.shell import DeployError, for_systemd, q
from tasks.site import maintained
from tasks.units import detached, transient, work_unit

# Loads the app's environment exactly as gunicorn does (by running gunicorn's own config
# file), then becomes the command.
WITH_APP_ENV = ("import os, sys; exec(open(sys.argv[1]).read(), {}); "
                "os.execvp(sys.argv[2], sys.argv[2:])")


def as_the_app(s, release, command, timeout=None, terminal=False):
    """A command running COMMAND (shell words) in RELEASE as the app user, the way gunicorn
    runs: its venv first on PATH, the app's environment, cwd the release (shared paths
    linked), in a transient service, killed after TIMEOUT seconds (exit 124) if given, on a
    terminal of its own if TERMINAL (`flask shell`)."""
    return transient(f"{q(release)}/.venv/bin/python -c {q(WITH_APP_ENV)} {q(s.gunicorn_conf)} "
                     + (f"timeout -k 10 {timeout} " if timeout else "") + for_systemd(command),
                     wait=True, io="pty" if terminal else "pipe", user=s.user, cwd=q(release),
                     properties=(f"RuntimeMaxSec={timeout + 30}",) if timeout else (),
                     env=(f"PATH={q(release)}/.venv/bin:/usr/local/bin:/usr/bin:/bin",))


def release_phase(h, release):
    """Run app.release_command in the new RELEASE before any traffic reaches it; a failure
    stops the deploy with the command's output. Returns what the step line says of it."""
    s = h.settings
    if not s.release_command:
        return ""
    if h.release_phase_done:
        return "its release command ran on the first host"
    backup, undo = "", ""
    # A migration is the one change a rollback cannot undo: keep the data before it.
    if s.local_engine != "none" and "db" in h.facts.database:
        backup = h.change(backup_script(s), timeout=3600).strip().splitlines()[-1]
        undo = f"; the data before it is backed up: fab db.restore --from {backup}"
    elif s.managed_database in ("postgresql", "mysql") and s.database_host:
        with database_host(h) as db:
            backup = db.change(backup_script(s), timeout=3600).strip().splitlines()[-1]
            undo = (f"; the data before it is backed up on {db.name}: "
                    f"fab -H {db.name} db.restore --from {backup}")
    command = as_the_app(s, release, f"sh -c {q(s.release_command)}", s.release_timeout)
    # app.maintenance_during_release: visitors get the maintenance page meanwhile, on every
    # web host (the others serve the old code while the schema changes)
    webs = (s.roles.get("web") or ([h.c.original_host] if s.serves_app else [])) \
        if s.maintenance_during_release else []
    with maintained(h, "Updating: back in a moment.", webs) as quiet:
        result = h.script(detached(work_unit(s, "release"), command, s.release_timeout + 60),
                          timeout=s.release_timeout + 90)
    if result.exited == 124:
        raise DeployError(f"the release command timed out after {s.release_timeout} s "
                          f"(app.release_timeout); nothing was switched{undo}")
    if result.exited != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-8:]
        raise DeployError(f"the release command `{s.release_command}` failed (exit "
                          f"{result.exited}); nothing was switched{undo}. Its output:\n"
                          + "\n".join("  | " + line for line in output))
    return (f"backed up the database to {backup}" + (f" on {s.roles['db'][0]}" if
            s.database_host else "") + ", " if backup else "") + f"ran `{s.release_command}`" \
        + (" in maintenance mode" if quiet else "")

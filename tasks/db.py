"""`fab db.backup`, `db.restore` and `db.shell`: the app's data, which a code rollback cannot
undo. Backups are made and kept on the server, root-only (tasks/backups.py), and with a
backup host (app.roles.backup) pushed there too (tasks/offsite.py), whence `db.restore`
takes them back, on this server or a new one."""

import sys
from contextlib import contextmanager

from invoke import task

from tasks.backups import (
    NAME_RE,
    RESTORING,
    backup_script,
    list_script,
    restore_script,
    size_script,
)
from tasks.deploy import Executed
from tasks.executor import FromExecutor
from tasks.offsite import fetch_script, locked_run, restic_error, snapshots
from tasks.offsite import list_script as offsite_list_script
from tasks.output import LinePrefixer
from tasks.plan import Call, Plan, Step
from tasks.provision import BREAK_LOCK, DRY_RUN, converge
from tasks.roles import for_host
from tasks.run import open_host, reach
from tasks.shell import DeployError, q
from tasks.site import maintained


def managed(s):
    """The engine, or one line saying there is none to back up."""
    if s.managed_database == "none":
        raise DeployError("the app has no database this tool runs (app.database is none, or "
                          "app.env_file sets DATABASE_URL): back that one up where it lives")
    if s.local_engine == "none":
        where = s.roles.get("db") or s.roles.get("web")
        raise DeployError(f"this host runs no database; it is on {where[0]}: run this there "
                          f"(fab -H {where[0]} ...)")
    return s.managed_database


def what(s):
    return f"the {managed(s)} database {s.database_name}" if s.managed_database != "sqlite" \
        else f"the SQLite database {s.sqlite_path}"


def take_backup(h):
    """Back up now; return the backup's name."""
    return h.change(backup_script(h.settings)).strip().splitlines()[-1]


def backups_on(h):
    """[(name, KB)] of the host's backups, newest first."""
    return [(name, int(kb)) for name, _, kb in
            (line.partition(" ") for line in h.read(list_script(h.settings)).splitlines())]


def listing(backups):
    return ", ".join(name for name, _ in backups[:5]) or "none yet (fab db.backup)"


def offsite_ready(h):
    """Stop unless this host's off-site backups are set up (the marker fab writes last)."""
    s = h.settings
    if not h.facts.offsite:
        raise DeployError(f"off-site backups to {s.backup_host} are not set up on this host "
                          "yet: run fab provision first")


def offsite_backups(h):
    """[(name, snapshot id, time)] of the off-site backups, newest first."""
    s = h.settings
    offsite_ready(h)
    return snapshots(h.read(offsite_list_script(s), timeout=600, explain=lambda result: (
        f"cannot list the off-site backups on {s.backup_host}: "
        f"{restic_error(result.stderr or result.stdout)}")), s)


def push_backup(h):
    """Back up now as the timer does (made here, pushed off-site; never beside a run of the
    timer's: both hold its lock); return the backup's name."""
    s = h.settings
    offsite_ready(h)
    said = h.change(locked_run(s),
                    timeout=3600, explain=lambda result: (
                        f"the backup or its push to {s.backup_host} failed: "
                        f"{restic_error(result.stderr or result.stdout)}"))
    names = [line.strip() for line in said.splitlines() if NAME_RE.fullmatch(line.strip())]
    if not names:
        raise DeployError(f"the backup pushed to {s.backup_host} did not say its name")
    return names[-1]


def backup_plan(s):
    managed(s)

    def run(h):
        name = push_backup(h) if s.offsite else take_backup(h)
        kb = dict(backups_on(h)).get(name, 0)
        pushed = f" and pushed it to {s.backup_host}" if s.offsite else ""
        return f"backed up {what(s)} to {s.backups}/{name} ({kb} KB){pushed}"
    where = f" and {s.backup_host}" if s.offsite else ""
    return Plan([Call("", run, f"back up {what(s)} to {s.backups}{where}")])


@contextmanager
def programs_stopped(h):
    """On a database host of its own: the app's programs on every web and worker host
    stopped for the block and started after it, as on one server: no request meets the data
    half restored, and every pool connects again to the data restored."""
    s, stopped = h.settings, []
    try:
        for host in [] if s.runs_app else s.roles.get("web", []) + s.roles.get("worker", []):
            programs = " ".join(q(p) for p in for_host(s, h.c.config, host).programs)
            with reach(h, host) as app_host:
                app_host.change(f"supervisorctl stop {programs} >/dev/null")
            stopped.append((host, programs))
        yield
    finally:
        for host, programs in stopped:
            with reach(h, host) as app_host:
                app_host.change(f"supervisorctl start {programs} >/dev/null")


def restore_plan(h, name):
    s = h.settings
    managed(s)
    backups = backups_on(h)
    local = NAME_RE.fullmatch(name or "") and name in dict(backups)
    offsite = offsite_backups(h) if s.offsite and not local else []
    known = f"the backups here, newest first: {listing(backups)}" + (
        f"; on {s.backup_host}: {', '.join(n for n, _, _ in offsite[:5]) or 'none yet'}"
        if s.offsite and not local else "")
    if not name:
        raise DeployError(f"db.restore needs --from NAME; {known}")
    snapshot = next((sid for n, sid, _ in offsite if n == name), None)
    if not (local or snapshot):
        raise DeployError(f"no backup {name!r} in {s.backups}"
                          f"{' or on ' + s.backup_host if s.offsite else ''}; {known}")
    size = h.read(size_script(s)).strip()
    replaced = f"{what(s)} ({size or '?'} KB now)"
    source = f"{name} ({dict(backups)[name]} KB)" if local else f"{name} from {s.backup_host}"

    def run(h):
        if not local:
            h.change(fetch_script(s, name, snapshot), timeout=3600, explain=lambda result: (
                f"cannot fetch {name} from {s.backup_host} (nothing changed): "
                f"{restic_error(result.stderr or result.stdout)}"))
        safety = take_backup(h)
        try:
            # on a database host of its own, every web host shows the page meanwhile
            with maintained(h, RESTORING, [] if s.serves_app else s.roles.get("web", [])), \
                    programs_stopped(h):
                h.change(restore_script(s, name), timeout=3600)
        except DeployError as e:
            raise DeployError(f"{e}; the data from before is in backup {safety} "
                              f"(fab db.restore --from {safety})") from None
        return (f"restored {name} over {replaced}; the data it replaced is backed up as "
                f"{safety}")
    return Plan([Call("", run, f"replace {replaced} with {source}, showing the maintenance "
                               "page meanwhile, after backing up the data it replaces")])


@task(klass=FromExecutor, help={"dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def backup(c, dry_run=False, break_lock=False):
    """Back up the app's database into <dir>/backups (root-only), and to the backup host."""
    step = Step("backup", lambda h: backup_plan(h.settings))
    return converge(c, "db.backup", [step], dry_run, break_lock)


@task(name="restore", help={"from": "the backup to restore (see the list without it)",
                            "dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def restore(c, from_=None, dry_run=False, break_lock=False):
    """Put a backup (--from NAME) in place of the app's data, backing the data up first.

    Visitors get the maintenance page meanwhile. Without --from, lists the backups (here,
    and on the backup host). An off-site backup is fetched first: a new server needs only
    `fab provision`, then this."""
    step = Step("restore", lambda h: restore_plan(h, from_))
    return converge(c, "db.restore", [step], dry_run, break_lock)


# A client file with the app's credentials, from database.env, root-only; the client
# connects over 127.0.0.1 (on a database host the URL names its own network address).
SHELL_LOGIN = {
    "postgresql": r"s|^DATABASE_URL=postgresql+psycopg2://\([^:]*\):\([^@]*\)@\([^:/]*\):\([0-9]*\)/"
                  r"\([^?]*\).*|127.0.0.1:\4:\5:\1:\2|p",
    "mysql": r"s|^DATABASE_URL=mysql+pymysql://\([^:]*\):\([^@]*\)@\([^:/]*\):\([0-9]*\)/"
             r"\([^?]*\).*|[client]\nuser=\1\npassword=\2\nhost=127.0.0.1\nport=\4\ndatabase=\5|p",
}


def shell_script(s):
    """The database's own client, logged in as the app's role (a SQLite file: as the app
    user). The password goes through a root-only file, never a command line."""
    n, env = s.database_name, q(s.database_env_path)
    if s.managed_database == "sqlite":
        return f"exec runuser -u {q(s.user)} -- sqlite3 {q(s.sqlite_path)}"
    login = f"/run/fab/{s.name}.login"
    client = (f"PGPASSFILE={login} psql -h 127.0.0.1 -U {n} -d {n}"
              if s.managed_database == "postgresql"
              else f"mysql --defaults-extra-file={login}")
    return (f"umask 077; install -d -m 0700 /run/fab\n"
            f"sed -n {q(SHELL_LOGIN[s.managed_database])} {env} > {login}\n"
            f"{client}; rc=$?; rm -f {login}; exit $rc")


@task(name="shell")
def shell(c):
    """Open the database's client as the app's role (SQL on stdin works too)."""
    h = open_host(c)
    managed(h.settings)
    script = shell_script(h.settings)
    if sys.stdin.isatty() and sys.stdout.isatty():
        result = h.script(script, pty=True, in_stream=sys.stdin, hide=False)
    else:
        result = h.script(script, in_stream=sys.stdin, out_stream=LinePrefixer(h.name),
                          err_stream=LinePrefixer(h.name), hide=False)
    return Executed(result.exited)

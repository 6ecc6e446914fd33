"""`fab db.backup`, `db.restore` and `db.shell`: the app's data, which a code rollback cannot
undo. Backups are made and kept on the server, root-only (tasks/backups.py)."""

import sys

from invoke import task

from tasks.backups import (
    NAME_RE,
    backup_script,
    list_script,
    restore_script,
    size_script,
)
from tasks.deploy import Executed
from tasks.executor import FromExecutor
from tasks.output import LinePrefixer
from tasks.plan import Call, Plan, Step
from tasks.provision import BREAK_LOCK, DRY_RUN, converge
from tasks.run import open_host
from tasks.shell import DeployError, q


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


def backup_plan(s):
    managed(s)

    def run(h):
        name = take_backup(h)
        kb = dict(backups_on(h)).get(name, 0)
        return f"backed up {what(s)} to {s.backups}/{name} ({kb} KB)"
    return Plan([Call("", run, f"back up {what(s)} to {s.backups}")])


def restore_plan(h, name):
    s = h.settings
    managed(s)
    backups = backups_on(h)
    if not name:
        raise DeployError(f"db.restore needs --from NAME; the backups here, newest first: "
                          f"{listing(backups)}")
    if not NAME_RE.fullmatch(name) or name not in dict(backups):
        raise DeployError(f"no backup {name!r} in {s.backups}; the backups here, newest first: "
                          f"{listing(backups)}")
    size = h.read(size_script(s)).strip()
    replaced = f"{what(s)} ({size or '?'} KB now)"

    def run(h):
        safety = take_backup(h)
        try:
            h.change(restore_script(s, name), timeout=3600)
        except DeployError as e:
            raise DeployError(f"{e}; the data from before is in backup {safety} "
                              f"(fab db.restore --from {safety})") from None
        return (f"restored {name} over {replaced}; the data it replaced is backed up as "
                f"{safety}")
    return Plan([Call("", run, f"replace {replaced} with {name} "
                               f"({dict(backups)[name]} KB), stopping the app meanwhile, "
                               "after backing up the data it replaces")])


@task(klass=FromExecutor, help={"dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def backup(c, dry_run=False, break_lock=False):
    """Back up the app's database into <dir>/backups on the server (root-only)."""
    step = Step("backup", lambda h: backup_plan(h.settings))
    return converge(c, "db.backup", [step], dry_run, break_lock)


@task(name="restore", help={"from": "the backup to restore (see the list without it)",
                            "dry-run": DRY_RUN, "break-lock": BREAK_LOCK})
def restore(c, from_=None, dry_run=False, break_lock=False):
    """Put a backup (--from NAME) in place of the app's data, backing the data up first.

    The app's programs stop meanwhile. Without --from, lists the backups."""
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

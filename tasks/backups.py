"""Database backups, made and restored on the server, root-only in <dir>/backups.

A backup is named `<UTC time>-<live release>.<kind>`: `pgdump` (pg_dump's compressed
custom format), `sql.gz` (mysqldump, one transaction) or `sqlite3.gz` (SQLite's online
backup API: a consistent copy of a live file, never a raw cp). The newest
`app.keep_backups` are kept. These are scripts only; the tasks are tasks/db.py's.
"""

import re

from tasks.engines import AS_POSTGRES
from tasks.shell import q
from tasks.site import maintenance_off_script, maintenance_on_script

KINDS = {"postgresql": "pgdump", "mysql": "sql.gz", "sqlite": "sqlite3.gz"}
# The same pattern for Python and grep -E (which has no \d).
NAME_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9._-]+\.(pgdump|sql\.gz|sqlite3\.gz)$")
RESTORING = "Restoring data: back in a moment."  # the maintenance page's message
PSQL = f"({AS_POSTGRES} psql -Xq -v ON_ERROR_STOP=1)"
SQLITE_COPY = ("import sqlite3, sys; src = sqlite3.connect(sys.argv[1]); "
               "dst = sqlite3.connect(sys.argv[2]); src.backup(dst); dst.close(); src.close()")


def dump_lines(s, out):
    """Shell lines that write a dump of the app's database to OUT (a quoted path)."""
    n = s.database_name
    if s.managed_database == "postgresql":
        return [f"({AS_POSTGRES} pg_dump -Fc -d {n}) > {out}"]
    if s.managed_database == "mysql":
        return [f"{{ mysqldump --single-transaction --quick --routines {n} || "
                f"touch {out}.failed; }} | gzip > {out}",
                f"[ ! -e {out}.failed ] || {{ rm -f {out} {out}.failed; "
                "echo 'mysqldump failed' >&2; exit 1; }"]
    # SQLite: all file work as the app user, in a folder of its own: root never opens a
    # path in the app's state, where the app could have put a link.
    db, app = q(s.sqlite_path), f"runuser -u {q(s.user)} --"
    return [f"{app} test -f {db} || {{ echo 'no SQLite database at {s.sqlite_path} yet: "
            "nothing to back up' >&2; exit 1; }",
            f"work=$({app} mktemp -d)",
            f'{app} python3 -c {q(SQLITE_COPY)} {db} "$work/copy"',
            f'{app} cat "$work/copy" | gzip > {out}',
            f'{app} rm -rf "$work"']


def backup_script(s):
    """Back the app's database up into <dir>/backups (root-only) and keep the newest
    app.keep_backups; prints the new backup's name."""
    backups, kind = q(s.backups), KINDS[s.managed_database]
    return "\n".join([
        "set -e", "umask 077",
        f"install -d -o root -g root -m 0700 {backups}",
        f"rel=$(readlink {q(s.current)} 2>/dev/null || true); rel=${{rel##*/}}",
        f'name="$(date -u +%Y%m%dT%H%M%SZ)-${{rel:-none}}.{kind}"',
        f'tmp={backups}/".$name.tmp"',
        "trap 'rm -f \"$tmp\"' EXIT",
        *dump_lines(s, '"$tmp"'),
        f'mv -f "$tmp" {backups}/"$name"',
        f"ls -1 {backups} | grep -E '{NAME_RE.pattern}' | sort | head -n -{s.keep_backups} "
        f"| while read -r old; do rm -f {backups}/\"$old\"; done",
        'echo "$name"'])


def list_script(s):
    """The backups, newest first: `name size-in-KB`."""
    return (f"cd {q(s.backups)} 2>/dev/null || exit 0\n"
            f"ls -1 | grep -E '{NAME_RE.pattern}' | sort -r | while read -r b; do "
            'echo "$b $(( $(stat -c %s "$b") / 1024 ))"; done')


def restore_lines(s, path):
    """Shell lines that replace the app's data with the backup at PATH (quoted)."""
    n = s.database_name
    if s.managed_database == "postgresql":
        return [f"{PSQL} <<SQL",
                f"DROP DATABASE IF EXISTS {n} WITH (FORCE);",
                f"CREATE DATABASE {n} OWNER {n};",
                "SQL",
                f"({AS_POSTGRES} pg_restore --no-owner --role={n} -d {n}) "
                f"< {path}"]
    if s.managed_database == "mysql":
        return [f"gzip -t {path}",
                f"mysql -e 'DROP DATABASE IF EXISTS {n}; CREATE DATABASE {n} "
                "CHARACTER SET utf8mb4'",
                f"gzip -dc {path} | mysql {n}"]
    db, app = q(s.sqlite_path), f"runuser -u {q(s.user)} --"
    return [f"work=$({app} mktemp -d)",
            f"gzip -dc {path} | {app} sh -c 'cat > \"$1\"' sh \"$work/copy\"",
            f'{app} python3 -c {q(SQLITE_COPY)} "$work/copy" {db}',
            f'{app} rm -rf "$work"']


def restore_script(s, name):
    """Stop the app's programs, put backup NAME in place of the data, start them again. (On
    a database host, tasks.db stops the app hosts' programs around it.)"""
    programs = " ".join(q(p) for p in s.programs)
    path = q(f"{s.backups}/{name}")
    switch = q(s.maintenance_switch)
    # Where nginx serves the app, visitors get the maintenance page (503, Retry-After)
    # meanwhile, not 502s; a maintenance the operator turned on stays on.
    maintenance = [f"[ -f {switch} ] && was_on=1 || was_on=",
                   maintenance_on_script(s, RESTORING)] \
        if s.serves_app else ["was_on=1"]
    restart = f"supervisorctl start {programs} >/dev/null; " if programs else ""
    return "\n".join([
        "set -e",
        f"[ -f {path} ] || {{ echo 'no backup {name} in {s.backups}' >&2; exit 1; }}",
        *maintenance,
        f"trap '{restart}[ -n \"$was_on\" ] || {maintenance_off_script(s)}' EXIT",
        *([f"supervisorctl stop {programs} >/dev/null"] if programs else []),
        *restore_lines(s, path)])


def size_script(s):
    """Prints the size in KB of the app's data (nothing if it cannot be read: the server
    is down, or nothing is there yet)."""
    n = s.database_name
    if s.managed_database == "postgresql":
        return (f"({AS_POSTGRES} psql -XtAq -c "
                f"\"SELECT pg_database_size('{n}') / 1024\" 2>/dev/null)")
    if s.managed_database == "mysql":
        return (f"mysql -NB -e \"SELECT COALESCE(SUM(data_length + index_length), 0) DIV 1024 "
                f"FROM information_schema.tables WHERE table_schema = '{n}'\" 2>/dev/null")
    if s.managed_database == "sqlite":
        return (f"runuser -u {q(s.user)} -- stat -c %s {q(s.sqlite_path)} 2>/dev/null "
                "| awk '{print int($1 / 1024)}'")
    return "true"

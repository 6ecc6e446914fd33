"""The data services an app can ask for (app.database, app.redis): each one's Debian
package, systemd unit, Python driver and port, and how root asks one what exists of the
app's database. The database step sets them up; the app step installs the driver; backups
and facts query them."""

from tasks.shell import q

# Their Debian package, systemd unit, and Python driver (the SQLAlchemy URL scheme names it;
# sqlite needs none, its package is the shell's client).
ENGINES = {"postgresql": ("postgresql", "postgresql", "psycopg2-binary==2.9.10"),
           "mysql": ("mariadb-server", "mariadb", "PyMySQL==1.1.1"),
           "sqlite": ("sqlite3", None, None)}
REDIS_PACKAGE = "redis-server"
PORTS = {"postgresql": 5432, "mysql": 3306}  # what a database host opens (and app.redis_port)
# postgresql@.service has no Restart=: a killed server would stay down.
PG_RESTART = "/etc/systemd/system/postgresql@.service.d/fab-restart.conf"


def redis_unit(s):
    """The systemd unit of the app's own Redis."""
    return f"redis-server@{s.redis_instance}"


def data_packages(s):
    """The Debian packages of the database and Redis servers this host runs."""
    return (((ENGINES[s.local_engine][0],) if s.local_engine in ENGINES else ())
            + ((REDIS_PACKAGE,) if s.local_redis else ()))


def data_services(s):
    """The database and Redis servers' systemd units this host runs."""
    engine = ENGINES.get(s.local_engine, (None, None))[1]
    return ((engine,) if engine else ()) + ((redis_unit(s),) if s.local_redis else ())


def data_ports(s):
    """The TCP ports of the database and Redis servers this host runs (sqlite has none)."""
    return ([PORTS[s.local_engine]] if s.local_engine in PORTS else []) + (
        [s.redis_port] if s.local_redis else [])


# PostgreSQL's superuser, from a folder it may enter (root's cwd is not).
AS_POSTGRES = "cd / && runuser -u postgres --"


def database_script(s):
    """Prints `role` and `db` for the app's role and database that exist (nothing when the
    engine is not installed): a query over the server's own socket, as its superuser."""
    name = s.database_name  # validated: a plain identifier, safe inside the quotes
    if s.local_engine == "postgresql":
        return (f"command -v psql >/dev/null && ({AS_POSTGRES} psql -XtAq -c "
                f"\"SELECT 'role' FROM pg_roles WHERE rolname = '{name}' UNION ALL "
                f"SELECT 'db' FROM pg_database WHERE datname = '{name}'\" 2>/dev/null)")
    if s.local_engine == "mysql":
        return ("command -v mysql >/dev/null && mysql -NB -e "
                f"\"SELECT 'role' FROM mysql.user WHERE user = '{name}' LIMIT 1; "
                f"SELECT 'db' FROM information_schema.schemata WHERE schema_name = '{name}'\" "
                "2>/dev/null")
    if s.local_engine == "sqlite":
        return f"[ -f {q(s.sqlite_path)} ] && echo db"
    return ""

"""The data services an app can ask for (app.database, app.redis): each one's Debian
package, systemd unit, Python driver and port. The database step sets them up; the app
step installs the driver; backups and facts query them."""

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

"""Step 2: the app's database (PostgreSQL, MariaDB for `mysql`, or a SQLite file) and Redis.

On one server they listen on localhost only (Debian's defaults, never opened in ufw). With a
database host (app.roles.db) they run there instead, listening on its own address too,
let in (pg_hba, MariaDB accounts, ufw) from the web and worker hosts only. The role, the
database and the passwords are made on the server that runs them: a password is generated
there (Python's `secrets`), reaches the SQL client on its stdin and the app in
/etc/<name>/database.env (root:<app user> 0640, loaded by gunicorn's config file before
the app's own env file, whose DATABASE_URL wins). An app host gets that file from the
database host through fab (read over SSH, uploaded 0600): never in a command line, fab's
output or a log. Every script checks what exists itself: a re-run creates nothing twice,
and nothing here ever drops data.
"""

from tasks.accounts import foreign_user, system_account
from tasks.declared import Journal, Needs
from tasks.engines import PG_RESTART, data_packages, data_ports, data_services, redis_unit
from tasks.plan import Call, Command, Plan, Step
from tasks.roles import address
from tasks.run import database_host
from tasks.shell import PYTHON, DeployError, q
from tasks.switch import restart, serving

# MariaDB logs to the journal (Debian's default); PostgreSQL and Redis to files.
PG_LOG = "/var/log/postgresql/postgresql-*-main.log"  # * : the version


def needs(s):
    """The engine's and Redis's packages and units here; on a database host, their ports
    open to the app hosts only."""
    ports = tuple((f"{port}/tcp", s.database_clients) for port in data_ports(s)) \
        if s.database_server else ()
    return Needs(packages=data_packages(s), services=data_services(s), ports=ports,
                 files=(PG_RESTART,) if s.local_engine == "postgresql" else ())


def logs(s):
    database = {"postgresql": [PG_LOG], "mysql": Journal("mariadb")}.get(
        s.managed_database, [f"/var/log/{s.name}/no-database"])
    return {"database": database,
            "redis": [f"/var/log/redis/redis-server-{s.redis_instance}.log"]}


SCHEMES = {"postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql", "sqlite": "sqlite"}
NEW_PASSWORD = f"{PYTHON} -c 'import secrets; print(secrets.token_hex(24))'"


def role_script(s):
    """Shell lines that make the role (with password "$pw") and the database, if missing,
    let the app hosts in (on a database host), and set "$db_url"."""
    n = s.database_name  # validated: a plain identifier
    at = s.database_host or "127.0.0.1"
    if s.local_engine == "postgresql":
        return [*(pg_listen_script(s) if s.database_server else []),
                "(cd / && runuser -u postgres -- psql -Xq -v ON_ERROR_STOP=1) <<SQL",
                f"SELECT 'CREATE ROLE {n} LOGIN' WHERE NOT EXISTS "
                f"(SELECT FROM pg_roles WHERE rolname = '{n}')\\gexec",
                f"ALTER ROLE {n} LOGIN PASSWORD '$pw';",
                f"SELECT 'CREATE DATABASE {n} OWNER {n}' WHERE NOT EXISTS "
                f"(SELECT FROM pg_database WHERE datname = '{n}')\\gexec",
                "SQL",
                *(pg_access_script(s) if s.database_server else []),
                f'db_url="postgresql+psycopg2://{n}:$pw@{at}:5432/{n}"']
    if s.local_engine == "mysql":
        hosts = ["localhost", "127.0.0.1", *s.database_clients]
        users = [f"'{n}'@'{host}'" for host in hosts]
        return [*(mysql_listen_script(s) if s.database_server else []),
                "mysql <<SQL",
                f"CREATE DATABASE IF NOT EXISTS {n} CHARACTER SET utf8mb4;",
                *[f"CREATE USER IF NOT EXISTS {u} IDENTIFIED BY '$pw';" for u in users],
                *[f"ALTER USER {u} IDENTIFIED BY '$pw';" for u in users],
                *[f"GRANT ALL PRIVILEGES ON {n}.* TO {u};" for u in users],
                "SQL",
                f'db_url="mysql+pymysql://{n}:$pw@{at}:3306/{n}?charset=utf8mb4"']
    if s.local_engine == "sqlite":
        return [f'db_url="sqlite:///{s.sqlite_path}"']
    return ["db_url="]


def replace_if_changed(path, then):
    """Shell: move PATH.fab-new over PATH if they differ (and run THEN), else drop it. PATH
    goes in double quotes: a fixed path, or one built from shell variables ($pg/...)."""
    return (f'if cmp -s "{path}.fab-new" "{path}"; then rm -f "{path}.fab-new"; '
            f'else mv -f "{path}.fab-new" "{path}"; {then}; fi')


def pg_listen_script(s):
    """PostgreSQL on a database host: listening on its address too (a restart when that
    changes, before anything asks it for more)."""
    return [
        'pg=$(ls -d /etc/postgresql/*/main | sort -V | tail -n1)',
        f"printf \"listen_addresses = 'localhost,%s'\\n\" {q(s.database_host)} "
        '> "$pg/conf.d/fab-listen.conf.fab-new"',
        'chown postgres:postgres "$pg/conf.d/fab-listen.conf.fab-new"',
        'chmod 0644 "$pg/conf.d/fab-listen.conf.fab-new"',
        replace_if_changed("$pg/conf.d/fab-listen.conf", "systemctl restart postgresql"),
        # postgresql.service stands for the clusters: its restart succeeds whatever theirs do
        "pg_isready -q -t 30 || { echo 'PostgreSQL does not answer: see journalctl -u "
        "postgresql@*' >&2; exit 1; }"]


def pg_access_script(s):
    """PostgreSQL on a database host: the app's role let in from each app host's address
    (this app's block of pg_hba.conf, reloaded when it changes)."""
    n, begin, end = s.database_name, f"# fab {s.name} begin", f"# fab {s.name} end"
    return [
        f'{{ sed {q(f"/^{begin}$/,/^{end}$/d")} "$pg/pg_hba.conf"; echo {q(begin)}',
        *[f"  echo {q(f'host {n} {n} {addr}/32 scram-sha-256')}" for addr in s.database_clients],
        f'  echo {q(end)}; }} > "$pg/pg_hba.conf.fab-new"',
        'chown postgres:postgres "$pg/pg_hba.conf.fab-new"',
        'chmod 0640 "$pg/pg_hba.conf.fab-new"',
        replace_if_changed("$pg/pg_hba.conf", "systemctl reload postgresql")]


def mysql_listen_script(s):
    """MariaDB on a database host: listening on its address too (a restart when that
    changes); accounts by address (no reverse DNS on each connection)."""
    cnf = "/etc/mysql/mariadb.conf.d/60-fab.cnf"
    return [f"printf '[mysqld]\\nbind-address = 127.0.0.1,%s\\nskip-name-resolve\\n' "
            f"{q(s.database_host)} > {cnf}.fab-new",
            f"chmod 0644 {cnf}.fab-new",
            replace_if_changed(cnf, "systemctl restart mariadb")]


def access_line(s):
    """What database-access says on a database host set up as wanted."""
    return f"listen {s.database_host} clients {' '.join(s.database_clients)}"


# An earlier version ran one redis-server for every app, its password in this file: an
# app moving to its own instance takes a copy of that data with it.
SHARED_REDIS_CONF = "/etc/redis/fab.conf"


def redis_config(s):
    """The app's own Redis instance, but its password: a socket in a folder only redis
    writes, the TCP port on a database host (for the app hosts), its own data and log."""
    i = s.redis_instance
    return "\n".join([
        f"# Managed by fab: the Redis of {s.name} alone (redis-server@{i}).",
        *([f"port {s.redis_port}", f"bind 127.0.0.1 -::1 {s.database_host}"]
          if s.database_server else ["port 0"]),
        f"unixsocket {s.redis_socket}", "unixsocketperm 777",
        f"pidfile /run/redis-{i}/redis-server.pid",
        f"logfile /var/log/redis/redis-server-{i}.log",
        "dir /var/lib/redis", f"dbfilename dump-{i}.rdb", ""])


def redis_script(s):
    """Shell lines that write the app's Redis instance's file with its password (kept if it
    has one), restart it if that changed (a first start takes a copy of the data of the
    Redis an earlier version shared between apps) and set "$redis_url"."""
    conf, unit = q(s.redis_conf), q(redis_unit(s))
    dump = f"/var/lib/redis/dump-{s.redis_instance}.rdb"
    url = (f"redis://:$rp@{s.database_host}:{s.redis_port}/0" if s.database_server
           else f"unix://{s.redis_socket}?db=0&password=$rp")
    return [f"rp=$(sed -n 's/^requirepass //p' {conf} 2>/dev/null || true)",
            f'[ -n "$rp" ] || rp=$({NEW_PASSWORD})',
            f"{{ printf '%s' {q(redis_config(s))}; printf 'requirepass %s\\n' \"$rp\"; }} "
            f"> {conf}.fab-new",
            f"chown redis:redis {conf}.fab-new; chmod 0640 {conf}.fab-new",
            f"if [ ! -e {dump} ] && grep -qs '^requirepass ' {SHARED_REDIS_CONF} && "
            f"grep -qs '^REDIS_URL=redis://' {q(s.database_env_path)}; then",
            f"  REDISCLI_AUTH=$(sed -n 's/^requirepass //p' {SHARED_REDIS_CONF}) redis-cli "
            f"--no-auth-warning -h 127.0.0.1 --rdb {dump} >/dev/null",
            f"  chown redis:redis {dump}",
            "fi",
            replace_if_changed(s.redis_conf, "restart=yes"),
            # Debian's own instance (redis-server.service, started by the package) has no
            # password and is every local account's: off, unless an earlier version's apps
            # still share it.
            f"[ -e {SHARED_REDIS_CONF} ] || systemctl disable -q --now redis-server.service "
            "2>/dev/null || true",
            f"systemctl enable -q {unit}",
            f'if [ -n "$restart" ]; then systemctl restart {unit}; else systemctl start {unit}; fi',
            f'redis_url="{url}"']


def setup_script(s, facts):
    """Make what is missing and write database.env; prints `changed` if that file did."""
    env = q(s.database_env_path)
    # on a database host the file is root's alone: there is no app user there
    reader = "root" if s.database_server else q(s.user)
    lines = ["umask 077", "restart="]
    if not (facts.user_exists or s.database_server):  # database.env is the app user's to read
        lines.append(system_account(s))
    lines.append(f"install -d -o root -g root -m 0755 {q(s.conf_dir)}")
    if s.local_engine in ("postgresql", "mysql"):
        # the password the app has, if any, else a new one
        lines += [f"pw=$(sed -n 's|^DATABASE_URL=[^:]*://[^:]*:\\([^@]*\\)@.*|\\1|p' {env} "
                  "2>/dev/null || true)",
                  f'[ -n "$pw" ] || pw=$({NEW_PASSWORD})']
    lines += role_script(s)
    lines += redis_script(s) if s.local_redis else ["redis_url="]
    lines += ["{ [ -z \"$db_url\" ] || printf 'DATABASE_URL=%s\\n' \"$db_url\"",
              f"  [ -z \"$redis_url\" ] || printf 'REDIS_URL=%s\\n' \"$redis_url\"; }} "
              f"> {env}.fab-new",
              f"chown root:{reader} {env}.fab-new; chmod 0640 {env}.fab-new",
              replace_if_changed(s.database_env_path, "echo changed")]
    if s.database_server:  # last: it says the access above is all in place
        lines.append(f"echo {q(access_line(s))} > {q(s.database_access_path)}")
    return "\n".join(lines)


def apply_setup(h):
    """Run the setup; restart the serving app the covered way if its environment changed."""
    s = h.settings
    if "changed" in h.change(setup_script(s, h.facts)) and serving(s, h.facts):
        restart(h)


def refusal(s, facts):
    """Why changing the database now would lose data (None: it would not)."""
    had = facts.database_env.get("DATABASE_URL")
    if had is None:
        return None
    wanted_at = s.database_host or "127.0.0.1"
    moved = not facts.database_at <= {wanted_at}  # to or from a database host
    if had == SCHEMES.get(s.managed_database) and not moved:
        return None
    engine = next((e for e, scheme in SCHEMES.items() if scheme == had), had)
    wanted = f"app.database={s.database}" + (
        " with DATABASE_URL in app.env_file" if s.managed_database != s.database else "") + (
        f" on the database host {s.database_host}" if moved and s.database_host else "")
    at = f" at {next(iter(facts.database_at))}" if moved else ""
    return (f"{wanted}, but the app's data is in its {engine} database {s.database_name}{at} "
            f"(see {s.database_env_path}); this tool never moves or drops it: copy the data "
            f"yourself (fab db.backup, and db.restore where it goes), then remove "
            f"{s.database_env_path}, or set app.database (and app.roles) back")


def described(s):
    at = f"on {s.database_host}" if s.database_host else "on localhost"
    parts = []
    if s.managed_database in ("postgresql", "mysql"):
        parts.append(f"{s.managed_database} database {s.database_name} {at}")
    elif s.managed_database == "sqlite":
        parts.append(f"SQLite database {s.sqlite_path}")
    elif s.database != "none":
        parts.append("DATABASE_URL from app.env_file (an external database)")
    if s.redis:
        parts.append(f"redis {at}")
    return ", ".join(parts)


def wanted_keys(s):
    return ({"DATABASE_URL"} if s.managed_database != "none" else set()) | (
        {"REDIS_URL"} if s.redis else set())


def plan(s, facts):
    """The engine (and Redis) on and started at boot, restarting by itself after a crash;
    the role, the database and database.env made if missing. An app host with a database
    host gets its database.env from there."""
    refused = refusal(s, facts) or (foreign_user(s, facts) if s.runs_app else None)
    if refused:
        raise DeployError(refused)
    if s.managed_database == "none" and not s.redis:
        return Plan(ok=described(s) or "no database (app.database: none)")  # had only Redis
    if s.runs_app and s.database_host:
        return client_plan(s, facts)
    changes = []
    units = [u for u in data_services(s) if facts.service(u) != ("enabled", "active")]
    if s.local_engine == "postgresql" and PG_RESTART not in facts.files:
        changes.append(Command("", f"install -d -m 0755 {q(PG_RESTART.rsplit('/', 1)[0])}\n"
                                   f"printf '[Service]\\nRestart=on-failure\\nRestartSec=2\\n' "
                                   f"> {PG_RESTART}\nsystemctl daemon-reload"))
    # The engine runs before the setup asks it for a role; the app's Redis is started by
    # the setup that writes its file, or after it.
    redis = [redis_unit(s)] if s.local_redis and redis_unit(s) in units else []
    engines = [u for u in units if u not in redis]
    if engines:
        changes.append(Command(f"started {', '.join(engines)}",
                               f"systemctl enable --now {' '.join(engines)} >/dev/null 2>&1"))
    missing_db = s.local_engine in ("postgresql", "mysql") and facts.database != {"role", "db"}
    if missing_db or set(facts.database_env) != wanted_keys(s) or (
            s.local_redis and not facts.redis_configured) or (
            s.database_server and facts.database_access != access_line(s)):
        said = f"set up the {described(s)}" + (
            f" for {len(s.database_clients)} app hosts" if s.database_server else "")
        changes.append(Call(said, apply_setup,
                            f"create the {described(s)} and write {s.database_env_path}"))
    elif redis:
        changes.append(Command(f"started {redis[0]}",
                               f"systemctl enable --now {q(redis[0])} >/dev/null 2>&1"))
    return Plan(changes, ok=described(s) + " ready")


def client_plan(s, facts):
    """database.env as the database host has it, if this host's is missing or elsewhere."""
    if set(facts.database_env) == wanted_keys(s) and facts.database_at == {s.database_host}:
        return Plan(ok=described(s) + ", database.env in place")
    db = s.roles["db"][0]
    return Plan([Call(f"wrote {s.database_env_path} for the {described(s)}", fetch_env,
                      f"copy {s.database_env_path} from {db}")])


def fetch_env(h):
    """Copy database.env from the database host (it lets this host in, or this stops)."""
    s = h.settings
    db = s.roles["db"][0]
    with database_host(h) as on_db:
        read = on_db.read(f"cat {q(s.database_env_path)} 2>/dev/null; echo @@; "
                          f"cat {q(s.database_access_path)} 2>/dev/null; true")
    env, _, access = read.partition("@@\n")
    me = address(h.c.config, h.c.original_host)
    if not env.strip() or me not in access.split()[3:]:
        raise DeployError(f"the database host {db} does not let {h.name} ({me}) in yet: "
                          f"provision it first (fab -H {db} provision)")
    path = q(s.database_env_path)
    tmp = h.upload(env)
    result = h.change("\n".join([
        f"trap 'rm -f {q(tmp)}' EXIT",
        *([] if h.facts.user_exists else [system_account(s)]),
        f"install -d -o root -g root -m 0755 {q(s.conf_dir)}",
        f"install -o root -g {q(s.user)} -m 0640 {q(tmp)} {path}.fab-new",
        replace_if_changed(s.database_env_path, "echo changed")]))
    if "changed" in result and serving(s, h.facts):
        restart(h)


def applies(h):
    """Whether the host runs the app or the database host, and the app has a database or
    Redis, or had one this tool made."""
    s = h.settings
    return (s.runs_app or s.database_server) and (
        s.database != "none" or s.redis or bool(h.facts.database_env))


STEP = Step("database", lambda h: plan(h.settings, h.facts),
            "Set up the app's database (app.database) and Redis (app.redis): on the "
            "database host, if there is one.",
            applies, beside_background=True)

"""Step 2: the app's database (PostgreSQL, MariaDB for `mysql`, or a SQLite file) and Redis.

The servers listen on localhost only (Debian's defaults, never opened in ufw). The role,
the database and the passwords are made on the server: a password is generated there
(Python's `secrets`), reaches the SQL client on its stdin and the app in
/etc/<name>/database.env (root:<app user> 0640, loaded by gunicorn's config file before
the app's own env file, whose DATABASE_URL wins). It never appears in a command line,
fab's output or a log. Every script checks what exists itself: a re-run creates nothing
twice, and nothing here ever drops data.
"""

from tasks.core import DeployError, q
from tasks.facts import PG_RESTART, REDIS, data_services
from tasks.plan import Call, Command, Plan, Step
from tasks.steps.app import restart, system_account
from tasks.switch import serving

SCHEMES = {"postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql", "sqlite": "sqlite"}
REDIS_CONF = "/etc/redis/fab.conf"
NEW_PASSWORD = "python3 -c 'import secrets; print(secrets.token_hex(24))'"


def role_script(s):
    """Shell lines that make the role (with password "$pw") and the database, if missing,
    and set "$db_url"."""
    n = s.database_name  # validated: a plain identifier
    if s.managed_database == "postgresql":
        return ["(cd / && runuser -u postgres -- psql -Xq -v ON_ERROR_STOP=1) <<SQL",
                f"SELECT 'CREATE ROLE {n} LOGIN' WHERE NOT EXISTS "
                f"(SELECT FROM pg_roles WHERE rolname = '{n}')\\gexec",
                f"ALTER ROLE {n} LOGIN PASSWORD '$pw';",
                f"SELECT 'CREATE DATABASE {n} OWNER {n}' WHERE NOT EXISTS "
                f"(SELECT FROM pg_database WHERE datname = '{n}')\\gexec",
                "SQL",
                f'db_url="postgresql+psycopg2://{n}:$pw@127.0.0.1:5432/{n}"']
    if s.managed_database == "mysql":
        users = [f"'{n}'@'localhost'", f"'{n}'@'127.0.0.1'"]
        return ["mysql <<SQL",
                f"CREATE DATABASE IF NOT EXISTS {n} CHARACTER SET utf8mb4;",
                *[f"CREATE USER IF NOT EXISTS {u} IDENTIFIED BY '$pw';" for u in users],
                *[f"ALTER USER {u} IDENTIFIED BY '$pw';" for u in users],
                *[f"GRANT ALL PRIVILEGES ON {n}.* TO {u};" for u in users],
                "SQL",
                f'db_url="mysql+pymysql://{n}:$pw@127.0.0.1:3306/{n}?charset=utf8mb4"']
    if s.managed_database == "sqlite":
        return [f'db_url="sqlite:///{s.sqlite_path}"']
    return ["db_url="]


def redis_script():
    """Shell lines that give redis-server a password (kept if it has one), restarting it
    if that changed, and set "$redis_url"."""
    return [f"rp=$(sed -n 's/^requirepass //p' {REDIS_CONF} 2>/dev/null || true)",
            'if [ -z "$rp" ]; then',
            f"  rp=$({NEW_PASSWORD})",
            f"  printf 'requirepass %s\\n' \"$rp\" > {REDIS_CONF}.fab-new",
            f"  chown redis:redis {REDIS_CONF}.fab-new; chmod 0640 {REDIS_CONF}.fab-new",
            f"  mv -f {REDIS_CONF}.fab-new {REDIS_CONF}; restart=yes",
            "fi",
            f"grep -qsx 'include {REDIS_CONF}' /etc/redis/redis.conf || "
            f"{{ echo 'include {REDIS_CONF}' >> /etc/redis/redis.conf; restart=yes; }}",
            f'[ -z "$restart" ] || systemctl restart {REDIS[1]}',
            'redis_url="redis://:$rp@127.0.0.1:6379/0"']


def setup_script(s, facts):
    """Make what is missing and write database.env; prints `changed` if that file did."""
    env = q(s.database_env_path)
    lines = ["umask 077", "restart="]
    if not facts.user_exists:  # database.env is the app user's to read
        lines.append(system_account(s.user))
    lines.append(f"install -d -o root -g root -m 0755 {q(s.conf_dir)}")
    if s.managed_database in ("postgresql", "mysql"):
        # the password the app has, if any, else a new one
        lines += [f"pw=$(sed -n 's|^DATABASE_URL=[^:]*://[^:]*:\\([^@]*\\)@.*|\\1|p' {env} "
                  "2>/dev/null || true)",
                  f'[ -n "$pw" ] || pw=$({NEW_PASSWORD})']
    lines += role_script(s)
    lines += redis_script() if s.redis else ["redis_url="]
    lines += ["{ [ -z \"$db_url\" ] || printf 'DATABASE_URL=%s\\n' \"$db_url\"",
              f"  [ -z \"$redis_url\" ] || printf 'REDIS_URL=%s\\n' \"$redis_url\"; }} > {env}.new",
              f"chown root:{q(s.user)} {env}.new; chmod 0640 {env}.new",
              f"if cmp -s {env}.new {env}; then rm -f {env}.new; "
              f"else mv -f {env}.new {env}; echo changed; fi"]
    return "\n".join(lines)


def apply_setup(h):
    """Run the setup; restart the serving app the covered way if its environment changed."""
    s = h.settings
    if "changed" in h.change(setup_script(s, h.facts)) and serving(s, h.facts):
        restart(h)


def refusal(s, facts):
    """Why changing the database now would lose data (None: it would not)."""
    had = facts.database_env.get("DATABASE_URL")
    if had is None or had == SCHEMES.get(s.managed_database):
        return None
    engine = next((e for e, scheme in SCHEMES.items() if scheme == had), had)
    wanted = f"app.database={s.database}" + (
        " with DATABASE_URL in app.env_file" if s.managed_database != s.database else "")
    return (f"{wanted}, but the app's data is in its {engine} database {s.database_name} "
            f"(see {s.database_env_path}); this tool never moves or drops it: copy the data "
            f"yourself (fab db.backup), then remove {s.database_env_path}, or set "
            f"app.database back to {engine}")


def described(s):
    parts = []
    if s.managed_database in ("postgresql", "mysql"):
        parts.append(f"{s.managed_database} database {s.database_name} on localhost")
    elif s.managed_database == "sqlite":
        parts.append(f"SQLite database {s.sqlite_path}")
    elif s.database != "none":
        parts.append("DATABASE_URL from app.env_file (an external database)")
    if s.redis:
        parts.append("redis on localhost")
    return ", ".join(parts)


def plan(s, facts):
    """The engine (and Redis) on and started at boot, restarting by itself after a crash;
    the role, the database and database.env made if missing."""
    refused = refusal(s, facts)
    if refused:
        raise DeployError(refused)
    if s.managed_database == "none" and not s.redis:
        return Plan(ok=described(s) or "no database (app.database: none)")  # had only Redis
    changes = []
    units = [u for u in data_services(s) if facts.service(u) != ("enabled", "active")]
    if s.managed_database == "postgresql" and PG_RESTART not in facts.files:
        changes.append(Command("", f"install -d -m 0755 {q(PG_RESTART.rsplit('/', 1)[0])}\n"
                                   f"printf '[Service]\\nRestart=on-failure\\nRestartSec=2\\n' "
                                   f"> {PG_RESTART}\nsystemctl daemon-reload"))
    if units:
        changes.append(Command(f"started {', '.join(units)}",
                               f"systemctl enable --now {' '.join(units)} >/dev/null 2>&1"))
    wanted_keys = ({"DATABASE_URL"} if s.managed_database != "none" else set()) | (
        {"REDIS_URL"} if s.redis else set())
    missing_db = s.managed_database in ("postgresql", "mysql") and \
        facts.database != {"role", "db"}
    if missing_db or set(facts.database_env) != wanted_keys or (
            s.redis and not facts.redis_configured):
        changes.append(Call(f"set up the {described(s)}", apply_setup,
                            f"create the {described(s)} and write {s.database_env_path}"))
    return Plan(changes, ok=described(s) + " ready")


def applies(h):
    """Whether the app has a database or Redis, or had one this tool made."""
    s = h.settings
    return s.serves_app and (s.database != "none" or s.redis or bool(h.facts.database_env))


STEP = Step("database", lambda h: plan(h.settings, h.facts),
            "Set up the app's database (app.database) and Redis (app.redis) on the server.",
            applies)

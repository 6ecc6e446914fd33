"""Config: the `app:` section of Fabric's config, read once and checked whole.

The defaults live in the table of settings (tasks.fields): they are registered as the task
collection's config (so `FABRIC_APP_*` env vars can override every key), and fabric.yaml
only documents them (and overrides what a project sets there).

Values that reach a shell are also quoted where commands are built (`tasks.shell.q`), but
validation here is the first wall: names, users, paths, ports and counts must look like
what they are, or the run stops before any connection.
"""

import difflib
import os
import re
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

from invoke.util import yaml

from tasks.fields import BY_NAME, DEFAULTS, FIELDS, INT_RANGES, is_git_url
from tasks.settings import Settings
from tasks.shell import DeployError
from tasks.source import dependencies_file, select

PROJECT = Path(__file__).resolve().parent.parent
SETTINGS_FILE = "deploy.yaml"  # the app's settings, kept in its repository (fab init)

# Settings of earlier versions, and why they went.
RETIRED = {"port": "gunicorn listens on a unix socket in <dir>/run, which only nginx and the "
                   "app reach (no loopback port another local account could take): remove it"}
# The engines' own roles and databases: an app given one would hold the whole engine.
ENGINE_NAMES = {"postgres", "template0", "template1", "mysql", "root", "sys",
                "information_schema", "performance_schema", "mariadb"}


class ConfigError(Exception):
    """One or more bad settings; `problems` holds one line each."""

    def __init__(self, problems):
        self.problems = problems
        super().__init__("; ".join(problems))


LOCAL_PATHS = ("source", "env_file", "tls_cert", "tls_key", "backup_key_file")


ENV_PREFIX = "FABRIC_APP_"


def env_name(key):
    return ENV_PREFIX + key.upper()


# `app: 3` in a settings file: a value where the settings belong.
NOT_SETTINGS = "app: must hold the settings, one `key: value` per line indented below it"


def did_you_mean(word, known, shown=str):
    """The `; did you mean X?` for the known name closest to WORD (as SHOWN gives it), or
    "" when none is close."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"; did you mean {shown(close[0])}?" if close else ""


def raw(config, unknown=None):
    """The `app` section merged over the defaults (config is an Invoke/Fabric Config), the
    `FABRIC_APP_*` variables read in each setting's own form (tasks.fields.Field.read), its
    local paths resolved. Unknown keys and variables are refused, all at once (or, given a
    list UNKNOWN, added to it and left out)."""
    section = config.get("app", {}) or {}
    if not isinstance(section, dict):
        where = getattr(config, "_runtime_path", None) or "fabric.yaml"
        raise ConfigError([f"{where}: {NOT_SETTINGS} (not {section!r})"])
    problems = [f"app.{k}: {RETIRED[k]}" if k in RETIRED else
                f"app.{k}: no such setting{did_you_mean(k, list(DEFAULTS))}"
                for k in sorted(set(section) - set(DEFAULTS))]
    for name in sorted(n for n in os.environ if n.startswith(ENV_PREFIX)):
        key = name[len(ENV_PREFIX):].lower()
        if key in RETIRED:
            problems.append(f"{name}: {RETIRED[key]}")
        elif key not in DEFAULTS:
            problems.append(f"{name}: no such setting"
                            f"{did_you_mean(key, list(DEFAULTS), env_name)}")
    problems, broken = located(config, problems), file_problems(config)
    if broken or (problems and unknown is None):
        raise ConfigError(broken + problems)
    if problems:
        unknown += problems
    values = {**DEFAULTS, **{k: v for k, v in section.items() if v is not None and k in DEFAULTS}}
    for key in DEFAULTS:  # a variable counts below -f FILE and overrides, as in Invoke
        if env_name(key) in os.environ and not (sets(config, "_overrides", key)
                                                or sets(config, "_runtime", key)):
            values[key] = os.environ[env_name(key)]
    values = {key: BY_NAME[key].read(value) for key, value in values.items()}
    if not given(config, "source") and not in_checkout():
        runtime = getattr(config, "_runtime_path", None)
        raise ConfigError([f"{runtime}: app.source is not set: add `source: .` (the app's "
                           "folder) or its git URL" if runtime else
                           f"no {SETTINGS_FILE} in {Path.cwd()} or a folder above it: run "
                           "`fab init` in your app's folder (or name the file: -f FILE)"])
    for key in LOCAL_PATHS:
        value = values[key]
        if isinstance(value, str) and value and not is_git_url(value):
            values[key] = str(base_of(config, key) / Path(value).expanduser())
    return values


def in_checkout():
    """Whether fab runs inside this tool's own checkout, whose demo app (hello_world) is
    the default source there and nowhere else."""
    return (PROJECT / "fabfile.py").is_file() and Path.cwd().resolve().is_relative_to(PROJECT)


def file_problems(config):
    """A settings file (-f FILE) that is not there, or whose settings are not under `app:`."""
    path = getattr(config, "_runtime_path", None)
    if not path:
        return []
    if not Path(path).expanduser().is_file():
        return [f"-f {path}: no such file"]
    loose = sorted(set(getattr(config, "_runtime", None) or {}) & set(DEFAULTS))
    return [f"{path}: {', '.join(loose)} at the top level: put the settings under `app:` "
            "(indented below it)"] if loose else []


def key_lines(path):
    """{key: line} of the `app:` section of the YAML file PATH ({} if it does not parse)."""
    try:
        root = yaml.compose(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    for k, v in getattr(root, "value", None) or []:
        if getattr(k, "value", None) == "app" and isinstance(v, yaml.MappingNode):
            return {key.value: key.start_mark.line + 1 for key, _ in v.value}
    return {}


def origin(config, key, lines):
    """Where app.KEY's value came from, for a problem's line: `FILE:LINE` of the settings
    file (or fabric.yaml) that sets it, or the `FABRIC_APP_*` variable; None: the default.
    LINES(path) gives a file's {key: line}."""
    if sets(config, "_overrides", key):
        return None
    for level in ("_runtime", "_project"):
        path = getattr(config, level + "_path", None)
        if path and sets(config, level, key):
            line = lines(path).get(key)
            return f"{os.path.relpath(path)}:{line}" if line else os.path.relpath(path)
        if level == "_runtime" and env_name(key) in os.environ:
            return env_name(key)
    return None


def located(config, problems):
    """PROBLEMS, each led by where the value it names (its first `app.KEY`) came from. Each
    file is read once."""
    read = {}

    def lines(path):
        if path not in read:
            read[path] = key_lines(path)
        return read[path]
    out = []
    for problem in problems:
        named = re.match(r"app\.(\w+)", problem)
        where = origin(config, named.group(1), lines) if named else None
        out.append(f"{where}: {problem}" if where and not problem.startswith(where) else problem)
    return out


def given(config, key):
    """Whether app.KEY is given anywhere but the defaults: an override, -f FILE, the
    project's fabric.yaml or a FABRIC_APP_* variable."""
    return any(sets(config, level, key) for level in ("_overrides", "_runtime", "_project")) \
        or env_name(key) in os.environ


def sets(config, level, key):
    """Whether Invoke's config LEVEL (`_overrides`, `_runtime`: -f FILE) sets app.KEY."""
    return key in ((getattr(config, level, None) or {}).get("app") or {})


def base_of(config, key):
    """Where a relative path in setting KEY starts: the folder of the file that set it
    (`-f FILE`, or the project's fabric.yaml), else the current folder (an environment
    variable) or this project (the defaults)."""
    runtime = getattr(config, "_runtime_path", None)
    if sets(config, "_overrides", key):  # in Invoke's order: overrides, -f FILE, env vars
        return Path.cwd()
    if runtime and sets(config, "_runtime", key):
        return Path(runtime).resolve().parent
    if env_name(key) in os.environ:
        return Path.cwd()
    return PROJECT


def problems_of(values):
    """Every problem in a raw settings dict, one line each (empty list: all good): each
    value's own (tasks.fields), then those of values taken together."""
    out = [problem for f in FIELDS for problem in f.problems(values[f.name])]
    tls, names = values["tls"], values["server_name"]
    for key in ("tls_cert", "tls_key"):
        path = values[key]
        if tls == "custom" and not (isinstance(path, str) and path and "\n" not in path):
            out.append(f"app.{key}={path!r}: tls: custom needs the local path of the "
                       f"{'certificate' if key == 'tls_cert' else 'private key'}")
        elif tls != "custom" and path is not None:
            out.append(f"app.{key} is set but app.tls={tls!r}: set app.tls to custom")
    if tls == "letsencrypt":
        if not values["letsencrypt_email"]:
            out.append("app.tls=letsencrypt needs app.letsencrypt_email (Let's Encrypt's "
                       "expiry notices go there)")
        if not (isinstance(names, str) and names.split() and all(
                n != "_" and not n.startswith("*.") and "." in n for n in names.split())):
            out.append("app.tls=letsencrypt needs app.server_name to list the site's real "
                       f"domain names (not {names!r})")
    name, db_name = values["name"], values["database_name"]
    derived = db_name or (name.replace("-", "_") if isinstance(name, str) else "")
    if values["database"] in ("postgresql", "mysql") and derived in ENGINE_NAMES:
        out.append(f"app.database_name={derived!r} is the engine's own (its superuser or "
                   "system database): the app would own the whole server; set "
                   "app.database_name to a name of the app's own")
    return out + roles_problems(values)


# In the order a run converges them: the database before the app, the balancer last.
ROLES = ("db", "web", "worker", "lb", "backup")
HOST_RE = re.compile(r"^[A-Za-z0-9_.@:\[\]-]{1,255}$")


def roles_problems(values):
    """app.roles: a mapping of known roles to lists of hosts, each host in one role, a
    balancer only in front of web hosts, workers only for app.processes, one database host
    for an engine that listens on the network."""
    roles = values["roles"]
    if not isinstance(roles, dict):
        return [f"app.roles={roles!r}: must be a mapping of roles to lists of hosts, like "
                "{web: [web1, web2], lb: [lb1]}"]
    out = []
    for role, hosts in roles.items():
        if role not in ROLES:
            out.append(f"app.roles: {role!r} is not a role (roles: {', '.join(ROLES)})")
        elif not (isinstance(hosts, list) and hosts
                  and all(isinstance(h, str) and HOST_RE.fullmatch(h) for h in hosts)):
            out.append(f"app.roles.{role}: must be a list of hosts as given to -H, "
                       "like [web1, tom@web2]")
    if out:
        return out
    seen = {}
    for role, hosts in roles.items():
        for host in hosts:
            if host in seen:
                out.append(f"app.roles: {host} is both {seen[host]} and {role}: give each role "
                           "hosts of its own")
            seen.setdefault(host, role)
    if roles and not roles.get("web"):
        out.append("app.roles: the app needs web hosts (app.roles.web)")
    if roles.get("worker") and not values["processes"]:
        out.append("app.roles.worker: worker hosts run app.processes, and there are none")
    db = roles.get("db", [])
    if len(db) > 1:
        out.append(f"app.roles.db: one database host, not {len(db)}")
    if db and values["database"] not in ("postgresql", "mysql") and not values["redis"]:
        out.append(f"app.roles.db: a database host runs app.database (postgresql or mysql) "
                   f"or app.redis, and app.database={values['database']!r}")
    if len(roles.get("backup", [])) > 1:
        out.append(f"app.roles.backup: one backup host, not {len(roles['backup'])}")
    if roles.get("backup") and values["database"] == "none":
        out.append("app.roles.backup: the backup host keeps app.database's backups, and "
                   "app.database is none")
    if db and values["database"] == "sqlite":
        out.append("app.database='sqlite' is a file beside the app: a database host needs "
                   "postgresql or mysql")
    app_hosts = len(roles.get("web", [])) + len(roles.get("worker", []))
    if not db and app_hosts > 1 and values["database"] != "none":
        out.append(f"app.database={values['database']!r} with {app_hosts} app hosts would "
                   "give each its own database: add a database host (app.roles.db), or set "
                   "DATABASE_URL in app.env_file to one database they share")
    if not db and app_hosts > 1 and values["redis"]:
        out.append(f"app.redis with {app_hosts} app hosts would give each its own Redis: add "
                   "a database host (app.roles.db) to run it")
    return out


ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_file_problems(path):
    """Problems of a local KEY=VALUE env file, by line number (never echoing a value)."""
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return [f"app.env_file={path!r}: cannot read it ({getattr(e, 'strerror', e)})"]
    out = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, _ = line.partition("=")
        if not sep or not ENV_KEY_RE.fullmatch(key.strip()):
            out.append(f"app.env_file line {number}: expected KEY=VALUE with KEY made of "
                       "letters, digits and _")
    return out


def certificate_problems(cert_path, key_path):
    """Problems of a local certificate chain and key: unreadable, expired, or not a pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    try:
        chain = x509.load_pem_x509_certificates(Path(cert_path).expanduser().read_bytes())
    except (OSError, ValueError) as e:
        return [f"app.tls_cert={cert_path!r}: not a readable PEM certificate "
                f"({getattr(e, 'strerror', None) or e})"]
    try:
        key = load_pem_private_key(Path(key_path).expanduser().read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        return [f"app.tls_key={key_path!r}: not a readable, unencrypted PEM private key "
                f"({getattr(e, 'strerror', None) or e})"]
    if key.public_key() != chain[0].public_key():
        return [f"app.tls_key={key_path!r} does not belong to the certificate in {cert_path!r}"]
    if chain[0].not_valid_after_utc < datetime.now(UTC):
        return [f"app.tls_cert={cert_path!r} expired on {chain[0].not_valid_after_utc:%Y-%m-%d}"]
    return []


def validate(config):
    """Check the config before any connection; raise ConfigError listing every problem,
    each with where its value came from."""
    unknown = []
    values = raw(config, unknown)
    problems = unknown + located(config, problems_of(values))
    if values["env_file"] is not None and not problems:
        problems += env_file_problems(values["env_file"])
    if values["tls"] == "custom" and not problems:
        problems += certificate_problems(values["tls_cert"], values["tls_key"])
    if problems:
        raise ConfigError(problems)
    source = Settings(**finish(values)).source_path
    if not is_git_url(values["source"]):
        try:
            dependencies_file(source)
            select(source, values["exclude"], values["env_file"])
        except DeployError as e:
            raise ConfigError([str(e)]) from None
    return values


def finish(values):
    values = dict(values)
    values["user"] = values["user"] or values["name"]
    if values["user"] == "root":
        raise ConfigError(["app.user='root': the app would run as root; leave app.user unset "
                           "(the app gets its own account, named after it)"])
    values["dir"] = values["dir"] or f"/srv/{values['name']}"
    values["database_name"] = values["database_name"] or values["name"].replace("-", "_")
    values["backup_key_file"] = values["backup_key_file"] or str(
        Path(f"~/.config/fab/{values['name']}.backup-key").expanduser())
    for key in INT_RANGES:
        values[key] = int(values[key])
    return {f.name: values[f.name] for f in fields(Settings) if f.name in values}


def load(config):
    """The validated Settings (the same for every host)."""
    return Settings(**finish(validate(config)))

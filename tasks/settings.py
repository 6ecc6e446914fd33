"""Settings: the `app:` section of Fabric config, read once and validated.

`DEFAULTS` is the one place the defaults live: they are registered as the task
collection's config (so `FABRIC_APP_*` env vars can override every key), and
fabric.yaml only documents them (and overrides what a project sets there).

Every other module takes a `Settings`; none reads raw config. Values that
reach a shell are also quoted where commands are built (`tasks.shell.q`), but
validation here is the first wall: names, users, paths, ports and counts must
look like what they are, or the run stops before any connection.
"""

import hashlib
import posixpath
import re
import zlib
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PROJECT = Path(__file__).resolve().parent.parent

DEFAULTS = {
    "name": "hello-world",
    "user": None,  # the app's own system account: <name>
    "dir": None,  # /srv/<name>
    "source": "hello_world",  # a local folder, or a git URL cloned on the server
    "ref": "HEAD",  # with a git source: the branch, tag or commit to deploy
    "module": "app:app",
    "workers": 4,
    "server_name": "_",
    "keep_releases": 5,
    "apt_cache_valid_time": 86400,
    "health_path": "/",
    "health_text": "",
    "health_timeout": 20,
    "firewall_revert_after": 120,
    "env_file": None,  # local KEY=VALUE file given to the app as its environment
    "host_keys": "accept-new",  # or "strict": refuse hosts not in known_hosts
    # A mapping (tls: {cert: ..., key: ...}) cannot override a string default in Invoke's
    # config merge, so an uploaded certificate is tls: custom with tls_cert and tls_key.
    "tls": "off",  # or "self-signed", "letsencrypt", "custom"
    "tls_cert": None,  # tls: custom: the local certificate chain (PEM)
    "tls_key": None,  # tls: custom: its local private key (PEM, unencrypted)
    "hsts_max_age": 31536000,  # Strict-Transport-Security max-age with TLS on; 0 = no header
    "letsencrypt_email": "",  # the ACME account's contact address (tls: letsencrypt)
    "exclude": "",  # .gitignore-style patterns of local files that never ship: "docs/ *.psd"
    "packages": "",  # pip requirements beside requirements.txt, e.g. "pymysql cryptography"
    "shared_paths": "",  # kept across releases in <dir>/shared: "logs/ instance/ app.db"
    "build_command": "",  # run in each new release before it is sealed: "flask translate compile"
    "release_command": "",  # run once per deploy before traffic moves: "flask db upgrade"
    "release_timeout": 300,  # seconds the release command may take
    "processes": {},  # extra programs of each release, name: command ("worker": "rq worker")
    "static_dir": "static",  # the app's static folder, relative to the release
    "static_url": "/static/",  # the URL prefix nginx serves it under
    "default_server": True,  # nginx's default site (exactly one app per server may be)
    "database": "none",  # or "postgresql", "mysql" (Debian's MariaDB), "sqlite" (in shared/)
    "database_name": None,  # the database and its role: <name> with '-' as '_'
    "redis": False,  # the app's own redis-server instance, password-protected, as REDIS_URL
    "keep_backups": 10,  # database backups kept in <dir>/backups
    "roles": {},  # hosts by role: {db: [db1], web: [web1, web2], worker: [w1], lb: [lb1]}
    "auto_reboot_at": "",  # fab harden's security updates reboot at this time ("04:30") if needed
}
# Settings of earlier versions, and why they went.
RETIRED = {"port": "gunicorn listens on a unix socket in <dir>/run, which only nginx and the "
                   "app reach (no loopback port another local account could take): remove it"}
DATABASES = ("none", "postgresql", "mysql", "sqlite")
TLS_MODES = ("off", "self-signed", "letsencrypt", "custom")
# `fab logs -c`, and the extra processes' names
COMPONENTS = ("app", "access", "error", "supervisor", "database", "redis", "all")
# The whole-number settings and their allowed ranges (env vars give them as strings).
INT_RANGES = {"workers": (1, 64), "keep_releases": (2, 100),
              "apt_cache_valid_time": (0, 10**8), "health_timeout": (1, 600),
              "firewall_revert_after": (30, 3600), "hsts_max_age": (0, 10**9),
              "release_timeout": (10, 3600), "keep_backups": (1, 1000)}

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PATH_RE = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_]*(\(\))?)?$")
HOSTNAME_RE = re.compile(r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                         r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%-]*$")
# git URLs: scheme://... or scp-like user@host:path; never starting with '-' (an option to git).
GIT_URL_RE = re.compile(r"^((https?|ssh|git|file)://(?!-)[A-Za-z0-9._~:/@%+-]+"
                        r"|(?!-)[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/%-]+)$")
GIT_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}$")
# A pip requirement: a name, extras, and one version clause; nothing a shell would expand.
REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?"
                            r"((==|>=|<=|~=|!=)[A-Za-z0-9.+!-]+)?$")
# Shared paths are top-level names: linking one never walks through a folder of the release.
SHARED_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*/?$")
RELATIVE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*[A-Za-z0-9_]$|^[A-Za-z0-9_]$")
# The engines' own roles and databases: an app given one would hold the whole engine.
ENGINE_NAMES = {"postgres", "template0", "template1", "mysql", "root", "sys",
                "information_schema", "performance_schema", "mariadb"}
DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")  # a name every engine takes unquoted
SAFE_TEXT_RE = re.compile(r"^[^\x00-\x1f\x7f]*$")
TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


class ConfigError(Exception):
    """One or more bad settings; `problems` holds one line each."""

    def __init__(self, problems):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Settings:
    name: str
    user: str
    dir: str
    source: str
    ref: str
    module: str
    workers: int
    server_name: str
    keep_releases: int
    apt_cache_valid_time: int
    health_path: str
    health_text: str
    health_timeout: int
    firewall_revert_after: int
    env_file: str
    host_keys: str
    tls: str  # off, self-signed, letsencrypt or custom
    tls_cert: str  # the local certificate chain and key of tls: custom
    tls_key: str
    hsts_max_age: int
    letsencrypt_email: str
    exclude: str  # space-separated .gitignore patterns (tasks.source)
    packages: str  # space-separated pip requirements installed with requirements.txt
    shared_paths: str  # space-separated paths in the release; a trailing / marks a folder
    build_command: str
    release_command: str
    release_timeout: int
    processes: dict  # name -> command, Procfile-style
    static_dir: str
    static_url: str
    default_server: bool
    database: str  # none, postgresql, mysql or sqlite
    database_name: str
    redis: bool
    keep_backups: int
    auto_reboot_at: str  # "" (never) or HH:MM
    roles: dict  # role -> [host as given to -H]
    # Per host (tasks.roles.for_host): its roles; for a balancer its web hosts' addresses,
    # for a web host the balancers'; for an app host the database host's address, for the
    # database host the app hosts'.
    host_roles: frozenset = frozenset({"web"})
    upstream: tuple = ()
    balancers: tuple = ()
    database_host: str = ""  # the database host's address ("": none, the app host runs it)
    database_clients: tuple = ()
    with_workers: bool = False  # app.roles has worker hosts: they, not web, run the processes

    @property
    def serves_app(self):
        """gunicorn behind this host's nginx."""
        return "web" in self.host_roles

    @property
    def runs_app(self):
        """The app's releases, virtualenv and supervisor programs."""
        return bool({"web", "worker"} & self.host_roles)

    @property
    def balancing(self):
        return "lb" in self.host_roles

    @property
    def database_server(self):
        """The database host: its engine and Redis listen for the app hosts."""
        return "db" in self.host_roles

    @property
    def releases(self):
        return f"{self.dir}/releases"

    @property
    def current(self):
        return f"{self.dir}/current"

    @property
    def venvs(self):
        return f"{self.dir}/venvs"

    @property
    def log_dir(self):
        return f"/var/log/{self.name}"

    @property
    def shared(self):
        """State kept across releases, owned by the app user; never pruned or rolled back."""
        return f"{self.dir}/shared"

    @property
    def shared_items(self):
        """[(path in the release, whether it is a folder)] of app.shared_paths."""
        return [(p.rstrip("/"), p.endswith("/")) for p in self.shared_paths.split()]

    @property
    def programs(self):
        """The app's supervisor programs on this host: gunicorn (on a web host), then one
        per extra process (unless worker hosts run them). The first is the main one."""
        web = [self.name] if self.serves_app else []
        procs = sorted(self.processes) if self.runs_app and not (
            self.serves_app and self.with_workers) else []
        return web + [f"{self.name}-{proc}" for proc in procs]

    @property
    def host_processes(self):
        """The extra processes this host runs."""
        return {proc: cmd for proc, cmd in self.processes.items()
                if f"{self.name}-{proc}" in self.programs}

    @property
    def socket_dir(self):
        """gunicorn's sockets: <user>:www-data 0750, so only the app and nginx reach them."""
        return f"{self.dir}/run"

    @property
    def socket(self):
        """The live gunicorn's socket."""
        return f"{self.socket_dir}/gunicorn.sock"

    @property
    def candidate_socket(self):
        """A candidate's socket: nginx's backup while the live gunicorn restarts."""
        return f"{self.socket_dir}/candidate.sock"

    @property
    def build_user(self):
        """The account that builds this app's releases (each app its own): fab-build-<name>,
        cut to a Unix name's 32 characters with a hash to keep it unique."""
        name = f"fab-build-{self.name}"
        if len(name) <= 32:
            return name
        digest = hashlib.sha256(self.name.encode()).hexdigest()[:7]
        return f"fab-build-{self.name[:14]}-{digest}"

    @property
    def build_scratch(self):
        """Where a build's shared paths point while it runs (no live data)."""
        return f"{self.dir}/build"

    @property
    def conf_dir(self):
        return f"/etc/{self.name}"

    @property
    def env_path(self):
        return f"{self.conf_dir}/env"

    @property
    def env_keys(self):
        """The keys the local env_file sets (validated before any connection)."""
        if not self.env_file:
            return set()
        lines = Path(self.env_file).expanduser().read_text().splitlines()
        return {line.split("=", 1)[0].strip() for line in lines
                if "=" in line and not line.strip().startswith("#")}

    @property
    def managed_database(self):
        """The engine this tool runs for the app: app.database, unless the app's env_file
        sets DATABASE_URL itself (an external database wins): then none."""
        return "none" if "DATABASE_URL" in self.env_keys else self.database

    @property
    def local_engine(self):
        """The engine this host runs: the app's (managed_database) on the database host, or
        on the app's own host when there is none; nothing on a balancer."""
        if self.database_server or (self.runs_app and not self.database_host):
            return self.managed_database
        return "none"

    @property
    def local_redis(self):
        """Whether this host runs the app's Redis (where local_engine runs the database)."""
        return self.redis and (self.database_server or (self.runs_app and not self.database_host))

    @property
    def redis_instance(self):
        """The app's own redis-server@ instance (Debian's template unit): its own keys, its
        own password, its own socket."""
        return f"fab-{self.name}"

    @property
    def redis_conf(self):
        return f"/etc/redis/redis-{self.redis_instance}.conf"

    @property
    def redis_socket(self):
        return f"/run/redis-{self.redis_instance}/redis-server.sock"

    @property
    def redis_port(self):
        """The TCP port of the app's Redis on a database host (elsewhere it has none): one
        per app name, so apps sharing a database host never share a port."""
        return 16379 + zlib.crc32(self.name.encode()) % 10000

    @property
    def database_access_path(self):
        """On the database host: the addresses it listens on and lets in, as last set."""
        return f"{self.conf_dir}/database-access"

    @property
    def database_env_path(self):
        """DATABASE_URL and REDIS_URL, written on the server (their passwords never leave it)."""
        return f"{self.conf_dir}/database.env"

    @property
    def backups(self):
        return f"{self.dir}/backups"

    @property
    def sqlite_path(self):
        return f"{self.shared}/{self.database_name}.sqlite3"

    @property
    def gunicorn_conf(self):
        return f"{self.conf_dir}/gunicorn.conf.py"

    @property
    def supervisor_conf(self):
        return f"/etc/supervisor/conf.d/{self.name}.conf"

    @property
    def nginx_site(self):
        return f"/etc/nginx/sites-available/{self.name}"

    @property
    def nginx_enabled(self):
        return f"/etc/nginx/sites-enabled/{self.name}"

    @property
    def tls_dir(self):
        if self.tls == "letsencrypt":
            return f"/etc/letsencrypt/live/{self.name}"
        return f"{self.conf_dir}/tls"

    @property
    def tls_cert_path(self):
        return f"{self.tls_dir}/fullchain.pem"

    @property
    def tls_key_path(self):
        return f"{self.tls_dir}/privkey.pem"

    @property
    def site_url(self):
        """The site as the server itself reaches it through nginx."""
        return "http://127.0.0.1" if self.tls == "off" else "https://127.0.0.1"

    @property
    def site_host(self):
        """The Host the site answers to: its first server_name ("" for `_`: any)."""
        name = self.server_name.split()[0]
        return "" if name == "_" else name.replace("*.", "fab-probe.", 1)

    @property
    def source_is_git(self):
        return is_git_url(self.source)

    @property
    def git_url(self):
        """The git source's URL as git sees it: an http(s) URL without its user part, which
        may be a token (see git_credentials)."""
        parts = urlsplit(self.source)
        if not self.git_credentials:
            return self.source
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    @property
    def git_credentials(self):
        """A git-credential-store line for an http(s) source with a user part ("" if none):
        `user:password`, `TOKEN` or `TOKEN:x-oauth-basic` alike."""
        parts = urlsplit(self.source)
        if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
            return ""
        return self.source if parts.password is not None else \
            urlunsplit(parts._replace(netloc=parts.netloc.replace("@", ":@", 1)))

    @property
    def git_credentials_path(self):
        return f"{self.repo_cache}.credentials"

    @property
    def source_shown(self):
        return shown_url(self.source)

    @property
    def repo_cache(self):
        """The server's mirror of a git source, fetched before each release."""
        return f"{self.dir}/repo.git"

    @property
    def source_path(self):
        return Path(self.source)


def shown_url(url):
    """URL as fab prints it: the user part of an http(s) URL (a password, or a token in the
    user's place) masked whole."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="****@" + parts.netloc.rpartition("@")[2]))


def is_git_url(source):
    return isinstance(source, str) and bool("://" in source or re.match(r"^[^/]+@[^/]+:", source))


def _path_problem(key, value):
    if not isinstance(value, str) or not PATH_RE.fullmatch(value):
        return f"app.{key}={value!r}: must be an absolute path of letters, digits and ._/@+-"
    parts = value.split("/")
    if ".." in parts or "." in parts or value == "/" or \
            posixpath.normpath(value) != value.rstrip("/"):
        return f"app.{key}={value!r}: must be a normalised absolute path below / (no '..')"
    return None


def _int_problem(key, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            return f"app.{key}={value!r}: must be a whole number from {low} to {high}"
    if not low <= value <= high:
        return f"app.{key}={value!r}: must be from {low} to {high}"
    return None


LOCAL_PATHS = ("source", "env_file", "tls_cert", "tls_key")


def raw(config):
    """The `app` section merged over the defaults (config is an Invoke/Fabric Config), its
    local paths resolved."""
    section = config.get("app", {}) or {}
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise ConfigError([f"app.{k}: {RETIRED[k]}" if k in RETIRED else
                           f"app.{k}: unknown setting (known: {', '.join(DEFAULTS)})"
                           for k in unknown])
    values = {**DEFAULTS, **{k: v for k, v in section.items() if v is not None}}
    for key in LOCAL_PATHS:
        value = values[key]
        if isinstance(value, str) and value and not is_git_url(value):
            values[key] = str(base_of(config, key) / Path(value).expanduser())
    return values


def base_of(config, key):
    """Where a relative path in setting KEY starts: the folder of the file that set it
    (`-f FILE`, or the project's fabric.yaml), else the current folder (an environment
    variable) or this project (the defaults)."""
    def sets(level):
        return key in ((getattr(config, level, None) or {}).get("app") or {})
    runtime = getattr(config, "_runtime_path", None)
    if sets("_overrides"):  # in Invoke's order: overrides, then -f FILE, then env vars
        return Path.cwd()
    if runtime and sets("_runtime"):
        return Path(runtime).resolve().parent
    if sets("_env"):
        return Path.cwd()
    return PROJECT


def problems_of(values):
    """Every problem in a raw settings dict, one line each (empty list: all good)."""
    out = []

    def expect(ok, message):
        if not ok:
            out.append(message)

    name = values["name"]
    expect(isinstance(name, str) and NAME_RE.fullmatch(name),
          f"app.name={name!r}: use 1-32 lowercase letters, digits, '-' or '_', "
          "starting with a letter")
    user = values["user"]
    expect(user is None or (isinstance(user, str) and USER_RE.fullmatch(user)),
          f"app.user={user!r}: must be a Unix user name (lowercase letters, digits, '-', '_')")
    if values["dir"] is not None:
        problem = _path_problem("dir", values["dir"])
        expect(problem is None, problem)
    source = values["source"]
    if is_git_url(source):
        expect(GIT_URL_RE.fullmatch(source), f"app.source={shown_url(source)!r}: not a git URL "
              "this tool accepts (https://, ssh://, git://, file:// or user@host:path)")
    else:
        expect(isinstance(source, str) and source and "\n" not in source,
              f"app.source={source!r}: must be the local path of the app's folder or a git URL")
    ref = values["ref"]
    expect(isinstance(ref, str) and GIT_REF_RE.fullmatch(ref),
          f"app.ref={ref!r}: must be a branch, tag or commit name")
    module = values["module"]
    expect(isinstance(module, str) and MODULE_RE.fullmatch(module),
          f"app.module={module!r}: must be a WSGI entry point like 'app:app'")
    for key, (low, high) in INT_RANGES.items():
        problem = _int_problem(key, values[key], low, high)
        expect(problem is None, problem)
    server_name = values["server_name"]
    names = server_name.split() if isinstance(server_name, str) else [None]
    expect(names and all(n == "_" or (n and len(n) <= 253 and HOSTNAME_RE.fullmatch(n))
                        for n in names),
          f"app.server_name={server_name!r}: must be '_' or host names separated by spaces")
    env_file = values["env_file"]
    expect(env_file is None or (isinstance(env_file, str) and env_file and "\n" not in env_file),
          f"app.env_file={env_file!r}: must be the local path of a KEY=VALUE file")
    expect(values["host_keys"] in ("accept-new", "strict"),
          f"app.host_keys={values['host_keys']!r}: must be 'accept-new' or 'strict'")
    tls = values["tls"]
    expect(tls in TLS_MODES, f"app.tls={tls!r}: must be one of {', '.join(TLS_MODES)}")
    for key in ("tls_cert", "tls_key"):
        path = values[key]
        if tls == "custom":
            expect(isinstance(path, str) and path and "\n" not in path,
                  f"app.{key}={path!r}: tls: custom needs the local path of the "
                  f"{'certificate' if key == 'tls_cert' else 'private key'}")
        else:
            expect(path is None, f"app.{key} is set but app.tls={tls!r}: set app.tls to custom")
    email = values["letsencrypt_email"]
    expect(isinstance(email, str) and (not email or EMAIL_RE.fullmatch(email)),
          f"app.letsencrypt_email={email!r}: must be an e-mail address")
    if tls == "letsencrypt":
        expect(email, "app.tls=letsencrypt needs app.letsencrypt_email (Let's Encrypt's "
                     "expiry notices go there)")
        expect(isinstance(server_name, str) and names and
              all(n != "_" and not n.startswith("*.") and "." in n for n in names),
              f"app.tls=letsencrypt needs app.server_name to list the site's real domain "
              f"names (not {server_name!r})")
    packages = values["packages"]
    expect(isinstance(packages, str) and all(REQUIREMENT_RE.fullmatch(p) for p in packages.split()),
           f"app.packages={packages!r}: must be pip requirements separated by spaces, like "
           "'pymysql cryptography==44.0.0'")
    exclude = values["exclude"]
    expect(isinstance(exclude, str) and SAFE_TEXT_RE.fullmatch(exclude),
           f"app.exclude={exclude!r}: must be .gitignore patterns separated by spaces, like "
           "'docs/ *.psd'")
    shared = values["shared_paths"]
    bad = [p for p in shared.split() if not SHARED_RE.fullmatch(p)] \
        if isinstance(shared, str) else [shared]
    expect(not bad, f"app.shared_paths: {bad[0]!r} must be a name at the top of the release, "
                    "like 'logs/' (a folder) or 'app.db' (a file)" if bad else "")
    processes = values["processes"]
    if not isinstance(processes, dict):
        expect(False, f"app.processes={processes!r}: must be a mapping of names to commands")
    for proc, command in (processes if isinstance(processes, dict) else {}).items():
        expect(isinstance(proc, str) and NAME_RE.fullmatch(proc) and proc not in COMPONENTS,
               f"app.processes: {proc!r} is not a process name (lowercase letters, digits, '-' "
               f"and '_', starting with a letter; not one of {', '.join(COMPONENTS)})")
        expect(isinstance(command, str) and command.strip() and SAFE_TEXT_RE.fullmatch(command),
               f"app.processes.{proc}: must be a shell command on one line")
    for key in ("build_command", "release_command"):
        command = values[key]
        expect(isinstance(command, str) and SAFE_TEXT_RE.fullmatch(command),
               f"app.{key}={command!r}: must be a shell command on one line")
    static_dir = values["static_dir"]
    expect(isinstance(static_dir, str) and RELATIVE_RE.fullmatch(static_dir)
           and ".." not in static_dir.split("/") and "." not in static_dir.split("/"),
           f"app.static_dir={static_dir!r}: must be a folder inside the app, like 'static' or "
           "'app/static'")
    static_url = values["static_url"]
    expect(isinstance(static_url, str) and URL_PATH_RE.fullmatch(static_url)
           and static_url.endswith("/") and static_url != "/",
           f"app.static_url={static_url!r}: must be a URL path ending with '/', like '/static/'")
    expect(isinstance(values["default_server"], bool),
           f"app.default_server={values['default_server']!r}: must be true or false "
           "(FABRIC_APP_DEFAULT_SERVER=0 for false)")
    expect(values["database"] in DATABASES,
           f"app.database={values['database']!r}: must be one of {', '.join(DATABASES)}")
    db_name = values["database_name"]
    expect(db_name is None or (isinstance(db_name, str) and DB_NAME_RE.fullmatch(db_name)),
           f"app.database_name={db_name!r}: must be 1-32 lowercase letters, digits and '_', "
           "not starting with a digit")
    derived = db_name or (name.replace("-", "_") if isinstance(name, str) else "")
    expect(values["database"] not in ("postgresql", "mysql") or derived not in ENGINE_NAMES,
           f"app.database_name={derived!r} is the engine's own (its superuser or system "
           "database): the app would own the whole server; set app.database_name to a name "
           "of the app's own")
    expect(isinstance(values["redis"], bool),
           f"app.redis={values['redis']!r}: must be true or false (FABRIC_APP_REDIS=1 for true)")
    out += roles_problems(values)
    reboot_at = values["auto_reboot_at"]
    expect(isinstance(reboot_at, str) and (not reboot_at or TIME_RE.fullmatch(reboot_at)),
           f"app.auto_reboot_at={reboot_at!r}: must be a time like '04:30' (or empty: never)")
    path = values["health_path"]
    expect(isinstance(path, str) and URL_PATH_RE.fullmatch(path),
          f"app.health_path={path!r}: must be a URL path like '/' or '/health'")
    text = values["health_text"]
    expect(isinstance(text, str) and SAFE_TEXT_RE.fullmatch(text),
          f"app.health_text={text!r}: must be plain text on one line")
    return out


# In the order a run converges them: the database before the app, the balancer last.
ROLES = ("db", "web", "worker", "lb")
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
    """Check the config before any connection; raise ConfigError listing every problem."""
    values = raw(config)
    problems = problems_of(values)
    if values["env_file"] is not None and not problems:
        problems += env_file_problems(values["env_file"])
    if values["tls"] == "custom" and not problems:
        problems += certificate_problems(values["tls_cert"], values["tls_key"])
    if problems:
        raise ConfigError(problems)
    source = Settings(**finish(values)).source_path
    if not is_git_url(values["source"]):
        if not (source / "requirements.txt").is_file():
            raise ConfigError([f"app.source={values['source']!r}: no requirements.txt in {source}"])
        from tasks.source import DeployError, select  # the files a deploy would send
        try:
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
    for key in INT_RANGES:
        values[key] = int(values[key])
    return {f.name: values[f.name] for f in fields(Settings) if f.name in values}


def load(config):
    """The validated Settings (the same for every host)."""
    return Settings(**finish(validate(config)))

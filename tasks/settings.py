"""Settings: the app's validated settings (tasks.config reads them from Fabric's config),
and what follows from them: paths, names and roles on a host.

Every other module takes a `Settings`; none reads raw config.
"""

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tasks.fields import is_git_url, shown_url


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
    installer: str  # uv, or pip (tasks.installer)
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
    backup_schedule: str  # when the off-site backup runs (systemd calendar)
    backup_keep: str  # restic forget's policy: "daily=7 weekly=4 ..."
    backup_key_file: str  # this machine's copy of the off-site backups' key
    auto_reboot_at: str  # "" (never) or HH:MM
    schedule: dict  # job -> {when: calendar, command}, run by systemd timers
    maintenance_during_release: bool  # maintenance mode while the release command runs
    hooks: dict  # pre_deploy, post_deploy, failed -> a command run on this machine
    notify: str  # a URL that gets a JSON POST per deploy and rollback ("": none)
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
    runs_jobs: bool = True  # this host runs app.schedule (the first worker, else web, host)

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
    def previous(self):
        """The release live before `current` (nginx serves its static files as a fallback)."""
        return f"{self.dir}/previous"

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

    def fab_account(self, kind):
        """An account fab makes for this app's KIND of work: fab-KIND-<name>, cut to a Unix
        name's 32 characters with a hash to keep it unique."""
        prefix = f"fab-{kind}-"
        if len(prefix + self.name) <= 32:
            return prefix + self.name
        digest = hashlib.sha256(self.name.encode()).hexdigest()[:7]
        return f"{prefix}{self.name[:32 - len(prefix) - 8]}-{digest}"

    @property
    def build_user(self):
        """The account that builds this app's releases (each app its own)."""
        return self.fab_account("build")

    @property
    def offsite(self):
        """This host pushes the app's backups off-site: it runs the database, and there is
        a backup host (app.roles.backup)."""
        return bool(self.roles.get("backup")) and self.local_engine != "none"

    @property
    def backup_host(self):
        """The backup host, as given to -H ("": none)."""
        return (self.roles.get("backup") or [""])[0]

    @property
    def backup_account(self):
        """The account on the backup host that holds this app's backups (SFTP only)."""
        return self.fab_account("backup")

    @property
    def backup_home(self):
        """The backup account's home on the backup host; the restic repository is in it."""
        return f"/var/lib/fab-backups/{self.name}"

    def backup_file(self, what):
        """This host's off-site files, root-only in /etc/<name>: `key` (restic's password),
        `ssh` (the key that logs in to the backup host), `ssh.conf`, `known_hosts`, `restic`
        (restic with those), `run` (the scheduled backup) and `offsite` (what was set up
        on the backup host, written last)."""
        return f"{self.conf_dir}/backup-{what}"

    @property
    def backup_unit(self):
        """The off-site backup's systemd service and timer (named apart from the work a run
        waits for, like the jobs)."""
        return f"fab-backup:{self.name}"

    @property
    def backup_lock(self):
        """Held by the backup while it runs: the timer's and `fab db.backup`'s alike."""
        return f"/run/lock/fab-backup-{self.name}"

    @property
    def offsite_stamp(self):
        """`EPOCH NAME` of the newest backup pushed off-site, root-only."""
        return f"{self.backups}/.offsite"

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

    def job_unit(self, job):
        """The systemd units of app.schedule's JOB: `fab:<name>:<job>` .service and .timer
        (the colons, which no name has, keep one app's units apart from another's, and from
        the `fab-<name>.*` work a run waits for: a deploy never waits for a job)."""
        return f"fab:{self.name}:{job}"

    @property
    def maintenance_dir(self):
        """Where the maintenance pages are (nginx's to read, root's to write)."""
        return "/etc/nginx/fab-maintenance"

    @property
    def maintenance_page(self):
        """The page nginx serves as a 503 while the switch is on. It stays when the switch
        goes off, so a request that found the switch on never finds its page gone."""
        return f"{self.maintenance_dir}/{self.name}.html"

    @property
    def maintenance_switch(self):
        """While this file exists, maintenance is on: nginx answers with the page."""
        return f"{self.maintenance_dir}/{self.name}.on"

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

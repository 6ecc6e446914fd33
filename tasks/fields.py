"""The settings, as a table: each one's name, default, meaning and check, in one place.

`FIELDS` is the one source of the defaults (the task collection's config, so that
`FABRIC_APP_*` variables override every key), of each value's own check (tasks.settings
adds the checks that look at several values), and of the commented list in fabric.yaml and
the README's table of settings: both are written by tasks/settings_docs.py
(`make settings-docs`), and a test holds them to it.
"""

import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

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
DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")  # a name every engine takes unquoted
SAFE_TEXT_RE = re.compile(r"^[^\x00-\x1f\x7f]*$")
TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")

DATABASES = ("none", "postgresql", "mysql", "sqlite")
TLS_MODES = ("off", "self-signed", "letsencrypt", "custom")
# `fab logs -c` (tasks.steps' logs, and `all`): no extra process may take these names
COMPONENTS = ("app", "access", "error", "supervisor", "database", "redis", "backups", "all")


def shown_url(url):
    """URL as fab prints it: the user part of an http(s) URL (a password, or a token in the
    user's place) masked whole."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="****@" + parts.netloc.rpartition("@")[2]))


def is_git_url(source):
    return isinstance(source, str) and bool("://" in source or re.match(r"^[^/]+@[^/]+:", source))


@dataclass(frozen=True)
class Field:
    """One setting: CHECK(value) says what is wrong with a value (None: nothing; a list:
    several things); a message starting with `app.` is whole, any other follows
    `app.<name>=<value>: `."""

    name: str
    default: object
    doc: str  # what it is, on one line: fabric.yaml's comment and the README's table
    check: Callable[[object], str | None]
    low: int = None  # whole numbers: the allowed range (an env var gives them as strings)
    high: int = None
    words: bool = False  # several words: a YAML list, or one string of them

    def read(self, value):
        """VALUE as given (YAML, or an environment variable's text) in this setting's own
        form: a YAML list of words joined by spaces, a flag's yes/no/true/false/1/0/on/off a
        bool, a mapping's JSON text a dict. Anything else stays as it is, for the check."""
        if self.words and isinstance(value, list) and all(isinstance(w, str) for w in value):
            return " ".join(value)
        if self.low is not None and isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(self.default, bool) and isinstance(value, str):
            return FLAGS.get(value.strip().lower(), value)
        if isinstance(self.default, dict) and isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def problems(self, value):
        found = self.check(value) or []
        shown = shown_url(value) if self.name == "source" else value
        return [m if m.startswith("app.") else f"app.{self.name}={shown!r}: {m}"
                for m in ([found] if isinstance(found, str) else found)]


def text(pattern, message, optional=False):
    """A check: a string matching PATTERN (or None, if OPTIONAL), else MESSAGE."""
    def check(value):
        if optional and value is None:
            return None
        return None if isinstance(value, str) and pattern.fullmatch(value) else message
    return check


FLAGS = {"true": True, "yes": True, "on": True, "1": True,
         "false": False, "no": False, "off": False, "0": False}


def one_of(choices):
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def flag(env_example):
    return lambda value: None if isinstance(value, bool) else \
        f"must be true or false ({env_example})"


def whole(low, high):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(str(value), 10)
            except ValueError:
                return f"must be a whole number from {low} to {high}"
        return None if low <= value <= high else f"must be from {low} to {high}"
    return check


def path(value):
    if value is None:
        return None
    if not isinstance(value, str) or not PATH_RE.fullmatch(value):
        return "must be an absolute path of letters, digits and ._/@+-"
    parts = value.split("/")
    if ".." in parts or "." in parts or value == "/" or \
            posixpath.normpath(value) != value.rstrip("/"):
        return "must be a normalised absolute path below / (no '..')"
    return None


def source(value):
    if is_git_url(value):
        return None if GIT_URL_RE.fullmatch(value) else \
            ("not a git URL this tool accepts (https://, ssh://, git://, file:// or "
             "user@host:path)")
    return None if isinstance(value, str) and value and "\n" not in value else \
        "must be the local path of the app's folder or a git URL"


def local_file(message):
    return lambda value: None if value is None or (
        isinstance(value, str) and value and "\n" not in value) else message


def server_name(value):
    names = value.split() if isinstance(value, str) else [None]
    ok = names and all(n == "_" or (n and len(n) <= 253 and HOSTNAME_RE.fullmatch(n))
                       for n in names)
    return None if ok else "must be '_' or host names separated by spaces"


def words(pattern, message):
    """A check: words separated by spaces, each matching PATTERN."""
    return lambda value: None if isinstance(value, str) and all(
        pattern.fullmatch(w) for w in value.split()) else message


def shared_paths(value):
    items = value.split() if isinstance(value, str) else value if isinstance(value, list) \
        else [value]
    bad = [p for p in items if not (isinstance(p, str) and SHARED_RE.fullmatch(p))]
    return f"app.shared_paths: {bad[0]!r} must be a name at the top of the release, like " \
        "'logs/' (a folder) or 'app.db' (a file)" if bad else None


def processes(value):
    if not isinstance(value, dict):
        return "must be a mapping of names to commands"
    out = []
    for proc, command in value.items():
        if not (isinstance(proc, str) and NAME_RE.fullmatch(proc) and proc not in COMPONENTS):
            out.append(f"app.processes: {proc!r} is not a process name (lowercase letters, "
                       "digits, '-' and '_', starting with a letter; not one of "
                       f"{', '.join(COMPONENTS)})")
        if not (isinstance(command, str) and command.strip() and SAFE_TEXT_RE.fullmatch(command)):
            out.append(f"app.processes.{proc}: must be a shell command on one line")
    return out


CALENDAR_RE = re.compile(r"^[A-Za-z0-9*:,./~ +-]{1,100}$")


def calendar(value):
    return None if isinstance(value, str) and CALENDAR_RE.fullmatch(value) else \
        "must be a systemd calendar expression, like daily, hourly or '*-*-* 06:00'"


def schedule(value):
    if not isinstance(value, dict):
        return ("must be a mapping of jobs, like {digest: {when: \"*-*-* 06:00\", command: "
                "\"flask send-digest\"}}")
    out = []
    for job, spec in value.items():
        if not (isinstance(job, str) and NAME_RE.fullmatch(job)):
            out.append(f"app.schedule: {job!r} is not a job name (lowercase letters, digits, "
                       "'-' and '_', starting with a letter)")
        elif not (isinstance(spec, dict) and set(spec) == {"when", "command"}):
            out.append(f"app.schedule.{job}: must be {{when: CALENDAR, command: COMMAND}}")
        else:
            if calendar(spec["when"]):
                out.append(f"app.schedule.{job}.when: {calendar(spec['when'])}")
            if not (isinstance(spec["command"], str) and spec["command"].strip()
                    and SAFE_TEXT_RE.fullmatch(spec["command"])):
                out.append(f"app.schedule.{job}.command: must be a shell command on one line")
    return out


HOOKS = ("pre_deploy", "post_deploy", "failed")


def hooks(value):
    if not isinstance(value, dict):
        return "must be a mapping of hooks to commands, like {post_deploy: ./tell-the-team}"
    out = []
    for hook, command in value.items():
        if hook not in HOOKS:
            out.append(f"app.hooks: {hook!r} is not a hook ({', '.join(HOOKS)})")
        elif not (isinstance(command, str) and command.strip() and "\n" not in command):
            out.append(f"app.hooks.{hook}: must be a command on one line")
    return out


KEEP_RE = re.compile(r"^(last|hourly|daily|weekly|monthly|yearly)=[0-9]{1,4}$")


NOTIFY_RE = re.compile(r"^https?://[^\s\"'<>]+$")


def static_dir(value):
    ok = isinstance(value, str) and RELATIVE_RE.fullmatch(value) \
        and ".." not in value.split("/") and "." not in value.split("/")
    return None if ok else "must be a folder inside the app, like 'static' or 'app/static'"


def static_url(value):
    ok = isinstance(value, str) and URL_PATH_RE.fullmatch(value) and value.endswith("/") \
        and value != "/"
    return None if ok else "must be a URL path ending with '/', like '/static/'"


COMMAND = text(SAFE_TEXT_RE, "must be a shell command on one line")


def number(name, default, doc, low, high):
    return Field(name, default, doc, whole(low, high), low, high)


FIELDS = [
    Field("name", "hello-world", "supervisor program, nginx site and log folder name",
          text(NAME_RE, "use 1-32 lowercase letters, digits, '-' or '_', starting with a "
               "letter")),
    Field("user", None, "the app's own system account; default: the app's name",
          text(USER_RE, "must be a Unix user name (lowercase letters, digits, '-', '_')",
               optional=True)),
    Field("dir", None, "the deploy tree, root's; default: /srv/<name>", path),
    Field("source", "hello_world",
          "the app's folder (with requirements.txt or pyproject.toml) or git URL; the demo "
          "only in this checkout", source),
    Field("ref", "HEAD", "git source only: branch, tag or commit (HEAD: the default branch)",
          text(GIT_REF_RE, "must be a branch, tag or commit name")),
    Field("module", "app:app", "WSGI entry point given to gunicorn",
          text(MODULE_RE, "must be a WSGI entry point like 'app:app'")),
    number("workers", 4, "gunicorn worker processes", 1, 64),
    Field("server_name", "_", "nginx server_name: host names, or _ for any", server_name,
          words=True),
    number("keep_releases", 5, "releases kept on the server", 2, 100),
    number("apt_cache_valid_time", 86400, "seconds before apt lists are refreshed", 0, 10**8),
    Field("health_path", "/", "path probed after a deploy and by `fab status`",
          text(URL_PATH_RE, "must be a URL path like '/' or '/health'")),
    Field("health_text", "", "text the probe expects in the body (\"\" = any 200)",
          text(SAFE_TEXT_RE, "must be plain text on one line")),
    number("health_timeout", 20, "seconds a deploy waits for the app to be healthy", 1, 600),
    number("firewall_revert_after", 120,
           "dead-man switch: ufw reverts unless SSH is proven", 30, 3600),
    Field("env_file", None,
          "local KEY=VALUE file: uploaded root:<user> 0640, the app's environment",
          local_file("must be the local path of a KEY=VALUE file")),
    Field("host_keys", "accept-new", "unknown hosts: record their key; \"strict\": refuse them",
          lambda value: None if value in ("accept-new", "strict") else
          "must be 'accept-new' or 'strict'"),
    # A mapping (tls: {cert: ..., key: ...}) cannot override a string default in Invoke's
    # config merge, so an uploaded certificate is tls: custom with tls_cert and tls_key.
    Field("tls", "off", "self-signed | letsencrypt | custom: https on 443, http redirects",
          one_of(TLS_MODES)),
    Field("tls_cert", None, "tls: custom: local certificate chain (PEM), uploaded 0644",
          lambda value: None),  # checked with app.tls (tasks.config)
    Field("tls_key", None, "tls: custom: its local private key, uploaded root-only 0600",
          lambda value: None),
    number("hsts_max_age", 31536000,
           "Strict-Transport-Security max-age with TLS on (0: no header)", 0, 10**9),
    Field("letsencrypt_email", "", "contact address for tls: letsencrypt (needs real "
          "server_name)", lambda value: None if isinstance(value, str) and (
              not value or EMAIL_RE.fullmatch(value)) else "must be an e-mail address"),
    Field("exclude", "", ".gitignore patterns of local files that never ship: \"docs/ *.psd\"",
          text(SAFE_TEXT_RE, "must be .gitignore patterns separated by spaces, like "
               "'docs/ *.psd'"), words=True),
    Field("packages", "", "pip requirements beside the app's own: \"pymysql cryptography\"",
          words(REQUIREMENT_RE, "must be pip requirements separated by spaces, like "
                "'pymysql cryptography==44.0.0'"), words=True),
    Field("installer", "uv", "uv | pip: what builds the venv (uv, pinned, falls back to pip "
          "where it cannot run)", one_of(("uv", "pip"))),
    Field("shared_paths", "", "kept across releases in <dir>/shared: \"logs/ instance/ app.db\"",
          shared_paths, words=True),
    Field("build_command", "",
          "run in each new release before it is sealed: flask translate compile", COMMAND),
    Field("release_command", "",
          "run once per deploy, before traffic moves: flask db upgrade", COMMAND),
    number("release_timeout", 300, "seconds the release command may take", 10, 3600),
    Field("maintenance_during_release", False, "maintenance mode (503, Retry-After) while the "
          "release command runs: a migration that must not meet traffic",
          flag("FABRIC_APP_MAINTENANCE_DURING_RELEASE=1 for true")),
    Field("processes", {}, "extra programs of each release: {worker: \"rq worker tasks\"}",
          processes),
    Field("static_dir", "static", "the app's static folder in the release, e.g. app/static",
          static_dir),
    Field("static_url", "/static/", "the URL prefix nginx serves static_dir under", static_url),
    Field("default_server", True,
          "nginx's default site; one app per server (env var: 0 for false)",
          flag("FABRIC_APP_DEFAULT_SERVER=0 for false")),
    Field("database", "none",
          "postgresql, mysql (MariaDB) or sqlite: made on the server, as DATABASE_URL",
          one_of(DATABASES)),
    Field("database_name", None, "the database and its role: the app's name with '-' as '_'",
          text(DB_NAME_RE, "must be 1-32 lowercase letters, digits and '_', not starting with "
               "a digit", optional=True)),
    Field("redis", False, "the app's own password-protected redis-server, as REDIS_URL",
          flag("FABRIC_APP_REDIS=1 for true")),
    number("keep_backups", 10, "database backups kept in <dir>/backups (fab db.backup)", 1, 1000),
    Field("roles", {}, "hosts by role: {db: [db1], web: [web1, web2], worker: [w1], lb: [lb1], "
          "backup: [b1]}; none: all web", lambda value: None),  # checked whole (tasks.config)
    Field("backup_schedule", "daily", "when the off-site backup runs (a systemd calendar; "
          "needs app.roles.backup)", calendar),
    Field("backup_keep", "last=3 daily=7 weekly=4 monthly=6", "off-site backups kept (restic "
          "forget's --keep-*)", words(KEEP_RE, "must be words like 'daily=7 weekly=4', each "
          "of last, hourly, daily, weekly, monthly or yearly"), words=True),
    Field("backup_key_file", None, "this machine's copy of the off-site backups' key "
          "(default ~/.config/fab/<name>.backup-key)",
          local_file("must be the path of a local file")),
    Field("schedule", {}, "jobs systemd timers run on one host, in the live release: "
          "{digest: {when: \"*-*-* 06:00\", command: \"flask send-digest\"}}", schedule),
    Field("hooks", {}, "commands run on this machine around a deploy or rollback: "
          "{pre_deploy: ..., post_deploy: ..., failed: ...}", hooks),
    Field("notify", "", "a URL that gets one JSON POST per deploy and rollback (Slack's and "
          "Discord's text fields)", lambda value: None if value == "" or (
              isinstance(value, str) and NOTIFY_RE.fullmatch(value)) else
          "must be an http(s) URL (or empty: none)"),
    Field("auto_reboot_at", "", "fab harden's security updates reboot at this time if needed "
          "(\"04:30\"); empty: never", lambda value: None if isinstance(value, str) and (
              not value or TIME_RE.fullmatch(value)) else
          "must be a time like '04:30' (or empty: never)"),
]
BY_NAME = {f.name: f for f in FIELDS}
DEFAULTS = {f.name: f.default for f in FIELDS}
INT_RANGES = {f.name: (f.low, f.high) for f in FIELDS if f.low is not None}

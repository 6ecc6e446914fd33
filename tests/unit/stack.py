"""Facts, settings and hosts shared by the unit tests of the stack's steps."""

from invoke import Config

from tasks import facts as facts_module
from tasks.config import load
from tasks.facts import Facts
from tasks.shell import sha256
from tasks.site import render_site
from tasks.steps import app, needs, supervisor
from tasks.steps.database import SCHEMES
from tests.unit.answers import answer, probe_line

S = load(Config(overrides={"app": {}}))
TLS = load(Config(overrides={"app": {"tls": "self-signed"}}))
LETSENCRYPT = load(Config(overrides={"app": {
    "tls": "letsencrypt", "server_name": "example.org", "letsencrypt_email": "a@example.org"}}))
PG = load(Config(overrides={"app": {"database": "postgresql", "redis": True}}))
MY = load(Config(overrides={"app": {"database": "mysql"}}))
LITE = load(Config(overrides={"app": {"database": "sqlite"}}))


def parse(text, s=S):
    """Facts from a server's answer written as `@@name` blocks, for the stack of S."""
    return facts_module.parse(answer(text), needs(s))


def facts_for(s, **values):
    """Facts with VALUES, read for the stack of S."""
    return Facts(needs=needs(s), **values)


CONVERGED = """\
@@os_id
debian
@@os_like

@@packages
nginx ii
python3-venv ii
supervisor ii
ufw ii
@@apt_age
120
@@user_exists
999
@@user_groups
hello-world
@@user_account
fab app hello-world:/nonexistent:/usr/sbin/nologin
@@build_user_exists
998
@@files
abc123 root root 644 /etc/supervisor/conf.d/hello-world.conf
@@modes
root root 700 /srv
root root 755 /srv/hello-world
@@links
/etc/nginx/sites-available/hello-world /etc/nginx/sites-enabled/hello-world
releases/20260101T000000Z-aaaaaaaa /srv/hello-world/current
../../venvs/0123456789abcdef /srv/hello-world/current/.venv
@@live_release
20260101T000000Z-aaaaaaaa
@@current_hash
feedface
@@releases
20250101T000000Z-bbbbbbbb
20260101T000000Z-aaaaaaaa
@@venvs
0123456789abcdef
@@running
hello-world RUNNING 4242 "/srv/hello-world/releases/20260101T000000Z-aaaaaaaa"
hello-world-worker - 0 -
@@services
nginx enabled active
supervisor enabled active
ufw enabled active
@@ufw_active
yes
@@ufw_rules
### tuple ### allow tcp 2222 0.0.0.0/0 any 0.0.0.0/0 in
### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in
### tuple ### allow tcp 80 ::/0 any ::/0 in
### tuple ### allow any 53 0.0.0.0/0 any 10.0.0.0/8 in
@@ssh_port
10.0.0.1 51234 10.0.0.2 2222
"""


def converged_facts(s=S):
    """CONVERGED with every managed file as the tool would write it."""
    from tasks.readers import FileFact
    f = parse(CONVERGED, s)
    wanted = {s.supervisor_conf: supervisor.render_conf(s), s.nginx_site: render_site(s),
              s.gunicorn_conf: app.gunicorn_conf(s)}
    for path, content in wanted.items():
        f.files[path] = FileFact(sha256(content), "root", "root", "644")
    f.modes.update({s.conf_dir: ("root", "root", "755"), s.releases: ("root", "root", "755"),
                    s.venvs: ("root", "root", "755"), s.log_dir: ("root", "hello-world", "750"),
                    "/srv": ("root", "root", "755"), s.shared: (s.user, s.user, "750"),
                    s.socket_dir: (s.user, "www-data", "750")})
    f.ufw_rules = {"allow 2222/tcp", "allow 80/tcp"}
    return f


def said(plan):
    """What the plan's changes say in the step line (the silent ones left out)."""
    return [change.said for change in plan.changes if change.said]


def database_facts(s=PG):
    from tasks.engines import PG_RESTART, redis_unit
    from tasks.readers import FileFact, Service
    f = converged_facts(s)
    f.services.update({u: Service("enabled", "active") for u in ("postgresql", "mariadb",
                                                                    redis_unit(s))})
    f.database = {"role", "db"}
    f.database_env = {"DATABASE_URL": SCHEMES[s.database]}
    if s.redis:
        f.database_env["REDIS_URL"] = ""
        f.redis_configured = True
    f.files[PG_RESTART] = FileFact("x", "root", "root", "644")
    return f


class ScriptedHost:
    """A host whose changes are recorded; the candidate's start answers healthy."""

    def __init__(self, facts=None):
        self.settings, self.changes, self.facts = S, [], facts or facts_for(S)

    def change(self, script, **_):
        self.changes.append(script)
        healthy = probe_line(1, 200, 3.0, "Hello world")
        return f"@@probes\n{healthy}\n" if "@@probes" in script else ""


class RecordingHost:
    """Just enough of a Host to see what the applier runs."""

    def __init__(self, dry_run, facts):
        self.dry_run, self.facts, self.name, self.ran = dry_run, facts, "web1", []

    def change(self, script, timeout=None):
        self.ran.append(script)

    def put(self, content, path, *args):
        self.ran.append(f"put {path}")

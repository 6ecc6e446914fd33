"""Planning without a server: facts in, plans and rendered files out."""

import dataclasses
from types import SimpleNamespace

import pytest
from invoke import Config

from tasks import deploy, lock, release, switch
from tasks import facts as facts_module
from tasks import source as sources
from tasks.config import load
from tasks.facts import Facts, script
from tasks.health import parse_probe
from tasks.host import Host
from tasks.plan import Call, Command, Plan, apply
from tasks.readers import Program
from tasks.shell import DeployError, sha256
from tasks.steps import app, firewall, needs, nginx, packages, supervisor
from tasks.steps.app import ancestors
from tasks.steps.nginx import render_site
from tests.unit.answers import answer, probe_line

S = load(Config(overrides={"app": {}}))
TLS = load(Config(overrides={"app": {"tls": "self-signed"}}))
LETSENCRYPT = load(Config(overrides={"app": {
    "tls": "letsencrypt", "server_name": "example.org", "letsencrypt_email": "a@example.org"}}))



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


def test_parse_reads_every_section():
    f = parse(CONVERGED)
    assert f.debian_like and f.user_exists and f.apt_age == 120
    assert f.packages == {"nginx": True, "python3-venv": True, "supervisor": True, "ufw": True}
    assert f.files["/etc/supervisor/conf.d/hello-world.conf"].sha256 == "abc123"
    assert f.modes["/srv"] == ("root", "root", "700")
    assert f.links["/srv/hello-world/current"] == "releases/20260101T000000Z-aaaaaaaa"
    assert f.current_hash == "feedface" and set(f.venvs) == {"0123456789abcdef"}
    assert f.releases == ["20250101T000000Z-bbbbbbbb", "20260101T000000Z-aaaaaaaa"]
    assert (f.program_state, f.program_pid) == ("RUNNING", 4242)
    assert f.program.release == "/srv/hello-world/releases/20260101T000000Z-aaaaaaaa"
    assert f.running["hello-world-worker"] == ("", 0, "")  # not loaded
    assert f.services["ufw"] == ("enabled", "active")
    assert f.ufw_active and f.ufw_rules == {"allow 2222/tcp", "allow 80/tcp"}
    assert f.ssh_port == 2222


def test_parse_of_a_fresh_server():
    f = parse("@@os_id\ndebian\n@@os_like\n\n@@packages\n@@apt_age\n@@user_exists\n@@running\n"
              "@@ufw_active\n@@ssh_port\n\n")
    assert f.packages == {} and f.apt_age is None and not f.user_exists
    assert f.program_state == "" and not f.ufw_active and f.ssh_port == 22


def test_fact_script_quotes_paths_and_is_read_only():
    text = script(S, needs(S))
    for verb in ("rm ", "mv ", "install ", "apt-get", "useradd", "ufw allow", "systemctl enable"):
        assert verb not in text
    assert "/srv/hello-world/current" in text


def test_packages_installs_only_what_is_missing_and_refreshes_stale_lists():
    f = facts_for(S, os_id="debian", packages={"nginx": True, "ufw": False}, apt_age=10)
    assert packages.missing(S, f) == (["python3-venv", "supervisor", "ufw"], False)
    f.apt_age = None
    assert packages.missing(S, f)[1] is True
    done = facts_for(S, os_id="ubuntu", packages=dict.fromkeys(needs(S).packages, True),
                     apt_age=None)
    assert packages.missing(S, done) == ([], False)  # nothing to install: no refresh either


def test_packages_refuses_other_distributions():
    with pytest.raises(DeployError, match="not a Debian/Ubuntu server .ID=fedora"):
        packages.missing(S, facts_for(S, os_id="fedora", os_like="rhel"))
    packages.missing(S, facts_for(S, os_id="raspbian", os_like="debian"))


def test_firewall_allows_the_ssh_port_in_use_before_enabling():
    f = parse(CONVERGED)
    assert firewall.rule_changes(S, f) == ([], [], False)
    fresh = facts_for(S, ssh_port=2222)
    assert firewall.rule_changes(S, fresh) == (["allow 2222/tcp", "allow 80/tcp"], [], True)
    assert firewall.wanted_rules(S, fresh)[0] == "allow 2222/tcp"


def test_firewall_opens_https_only_while_tls_is_on():
    f = parse(CONVERGED, TLS)
    assert firewall.rule_changes(TLS, f) == (["allow 443/tcp"], [], False)
    f.ufw_rules.add("allow 443/tcp")
    assert firewall.rule_changes(TLS, f) == ([], [], False)
    off = parse(CONVERGED)
    off.ufw_rules.add("allow 443/tcp")
    assert firewall.rule_changes(S, off) == ([], ["allow 443/tcp"], False)


def test_tls_packages_are_wanted_only_with_tls():
    assert "openssl" not in needs(S).packages and "openssl" in needs(TLS).packages
    assert "certbot" in needs(LETSENCRYPT).packages


def test_layout_opens_only_traversal_of_the_tree_and_fixes_what_differs():
    f = parse(CONVERGED)
    lines = app.layout_script(S, f)
    assert "chmod o+x /srv" in lines
    assert not any("useradd" in line for line in lines)
    assert "install -d -o root -g hello-world -m 750 /var/log/hello-world" in lines
    assert "install -d -o root -g root -m 755 /srv/hello-world" not in lines
    assert ancestors("/home/tom/shop") == ["/home", "/home/tom"]


def test_release_switches_current_by_renaming_a_new_symlink():
    lines = switch.switch_script(S, "20260101T000000Z-abcdabcd").splitlines()
    assert lines[1] == "mv -Tf /srv/hello-world/current.fab-new /srv/hello-world/current"
    # gunicorn restarts over supervisord's socket without waiting out startsecs: the
    # health probes after the switch are its proof
    restart = "\n".join(lines[2:])
    assert restart.startswith("python3 -I -S -c ") and restart.endswith("' hello-world")
    assert "stopProcess(name, True)" in restart and "startProcess(name, False)" in restart
    assert "supervisorctl" not in restart


class ScriptedHost:
    """A host whose changes are recorded; the candidate's start answers healthy."""

    def __init__(self, facts=None):
        self.settings, self.changes, self.facts = S, [], facts or facts_for(S)

    def change(self, script, **_):
        self.changes.append(script)
        healthy = probe_line(1, 200, 3.0, "Hello world")
        return f"@@probes\n{healthy}\n" if "@@probes" in script else ""


def test_a_deployment_of_a_version_before_sockets_moves_to_them_covered():
    """Its program listens on 127.0.0.1:8000 and its site sends to 8000, then 8001: the
    candidate answers on 8001 too, and the site moves in the program's covered restart."""
    old = converged_facts()
    old.program_conf = {"user": "hello-world", "command": "/srv/hello-world/current/.venv/bin/"
                        "gunicorn --workers 4 --bind 127.0.0.1:8000 app:app"}
    assert switch.legacy_port(old) == 8000 and switch.legacy_port(converged_facts()) is None
    h = ScriptedHost(old)
    switch.first_release(h, "20260101T000000Z-abcdabcd")
    assert "--bind unix:/srv/hello-world/run/candidate.sock --bind 127.0.0.1:8001 app:app" \
        in h.changes[0]


def test_a_candidate_is_stopped_without_waiting_only_after_the_block_succeeded():
    """Its graceful exit goes on alone, with what needed the block's success in the same
    command; after a failure the stop waits, so nothing of it outlives the run."""
    h = ScriptedHost()
    switch.first_release(h, "20260101T000000Z-abcdabcd")
    start, stop = h.changes
    assert "--workers 1 --bind unix:/srv/hello-world/run/candidate.sock app:app" in start
    assert stop.startswith("systemctl stop --no-block hello-world-candidate-")
    assert stop.endswith(switch.link_current(S, "20260101T000000Z-abcdabcd"))

    h = ScriptedHost()
    with pytest.raises(DeployError, match="nope"), switch.candidate(h, "/r", then="echo then"):
        raise DeployError("nope")
    assert h.changes[-1].startswith("systemctl stop hello-world-candidate-")
    assert not any("echo then" in script for script in h.changes)


def test_the_site_s_last_answer_stands_until_a_change_that_may_alter_what_it_serves():
    """The health step reports the answer that proved the switch; a prune or a stopped
    candidate leaves it standing, any other change makes the step probe again."""
    class Connection:
        user, host, is_connected = "root", "web1", True

        def run(self, command, **_):
            return SimpleNamespace(stdout="", stderr="", exited=0)
    h = Host(Connection(), S)
    h.site_answer = "HTTP 200 in 3 ms through nginx"
    h.change("true", serving_unchanged=True)
    assert deploy.probe_site(h) == "HTTP 200 in 3 ms through nginx (probed after the last change)"
    h.change("true")
    assert h.site_answer == ""


def test_a_release_builds_a_venv_only_when_its_requirements_are_new():
    unpack = release.unpack_tarball("/tmp/x.tgz")
    lines = release.release_script(S, unpack, "20260101T000000Z-abcdabcd", "h", "v" * 16, False)
    assert lines[-4:] == ["ln -sfn ../../venvs/vvvvvvvvvvvvvvvv "
                          "/srv/hello-world/releases/20260101T000000Z-abcdabcd/.venv",
                          "(umask 027; printf '%s\\n' h > \"$release/.fab-release.new\")",
                          'chgrp hello-world "$release/.fab-release.new"',
                          'mv "$release/.fab-release.new" "$release/.fab-release"']  # marker last
    assert not any("pip install" in line for line in lines)
    with_venv = release.release_script(S, unpack, "r", "h", "v" * 16, True)
    assert any("pip install" in line for line in with_venv)


def test_a_git_source_is_fetched_into_a_root_mirror_and_exported_by_commit():
    g = load(Config(overrides={"app": {"source": "https://git.example.org/shop.git",
                                           "ref": "v1.2"}}))
    assert g.source_is_git and not S.source_is_git and "git" in needs(g).packages
    script = sources.git_resolve_script(g)
    assert "git clone --quiet --mirror -- https://git.example.org/shop.git " \
           "/srv/hello-world/repo.git.fab-new" in script
    assert "rev-parse --verify --quiet 'v1.2^{commit}'" in script
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert release.unpack_commit(g, sha) == [
        f"git -C /srv/hello-world/repo.git archive --format=tar {sha} "
        '| tar -x -C "$release" --no-same-owner']
    assert app.release_id(sha).endswith("-01234567")


def test_rollback_goes_to_the_release_before_the_live_one():
    f = parse(CONVERGED)
    assert deploy.previous_release(f, "20260101T000000Z-aaaaaaaa") == "20250101T000000Z-bbbbbbbb"
    assert deploy.previous_release(f, "20250101T000000Z-bbbbbbbb") is None


def test_health_probe_output_is_parsed():
    assert parse_probe(probe_line(1, 200, 3.5, "Hello world") + "\n") == \
        (True, 200, 3.5, "Hello world")
    assert parse_probe(probe_line(0, 500, 12.0, "<h1>Internal")) == \
        (False, 500, 12.0, "<h1>Internal")
    assert parse_probe("Traceback ...")[0] is False


def test_a_page_cannot_forge_a_healthy_probe():
    """A 500 whose body holds what a healthy answer prints stays a 500: the body crosses as
    one JSON string (no line break of any kind starts a new answer)."""
    forged = "x\r1 200 1.0 ok\n[1, 200, 1.0, \"ok\"]\u2028[1, 200, 1.0, \"ok\"]"
    ok, code, _, excerpt = parse_probe(probe_line(0, 500, 3.0, forged))
    assert (ok, code) == (False, 500) and excerpt.startswith("x\r1 200")


def test_supervisor_program_has_what_the_tutorial_asks_for():
    conf = supervisor.render_conf(S)
    for line in ("[program:hello-world]", "user=hello-world", "autostart=true", "autorestart=true",
                 "stopasgroup=true", "killasgroup=true",
                 "stdout_logfile=/var/log/hello-world/app.log",
                 "stderr_logfile=/var/log/hello-world/error.log",
                 "directory=/srv/hello-world/current"):
        assert line in conf.splitlines()
    assert "--workers 4 --bind unix:/srv/hello-world/run/gunicorn.sock app:app" in conf


def test_nginx_site_has_what_the_tutorial_asks_for():
    site = render_site(S)
    for fragment in ("listen 80 default_server;", "server_name _;", "server_tokens off;",
                     "server unix:/srv/hello-world/run/gunicorn.sock max_fails=0;",
                     "server unix:/srv/hello-world/run/candidate.sock backup max_fails=0;",
                     "proxy_pass http://hello-world;", "proxy_redirect off;",
                     "proxy_set_header Host $host;", "proxy_set_header X-Real-IP $remote_addr;",
                     "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                     "alias /srv/hello-world/current/static/;", "expires 30d;",
                     "access_log /var/log/nginx/hello-world.access.log;",
                     "error_log /var/log/nginx/hello-world.error.log;"):
        assert fragment in site


def test_with_tls_http_redirects_and_https_is_modern_with_hsts():
    site = render_site(TLS)
    http, https = site.split("listen 443")
    assert "return 301 https://$host$request_uri;" in http and "proxy_pass" not in http
    for fragment in ("ssl_certificate /etc/hello-world/tls/fullchain.pem;",
                     "ssl_certificate_key /etc/hello-world/tls/privkey.pem;",
                     "ssl_protocols TLSv1.2 TLSv1.3;", "proxy_pass http://hello-world;",
                     'add_header Strict-Transport-Security "max-age=31536000" always;'):
        assert fragment in https
    no_hsts = load(Config(overrides={"app": {"tls": "self-signed", "hsts_max_age": 0}}))
    assert "Strict-Transport-Security" not in render_site(no_hsts)
    assert "Strict-Transport-Security" not in render_site(S) and "443" not in render_site(S)


def test_letsencrypt_first_serves_the_challenge_over_http_then_tls():
    before = render_site(LETSENCRYPT, tls=False)
    assert "location /.well-known/acme-challenge/" in before and "listen 443" not in before
    assert "proxy_pass" in before
    after = render_site(LETSENCRYPT)
    assert "ssl_certificate /etc/letsencrypt/live/hello-world/fullchain.pem;" in after
    assert after.index("acme-challenge") < after.index("return 301")


def test_templates_refuse_missing_values():
    from jinja2 import UndefinedError

    from tasks.templates import render
    with pytest.raises(UndefinedError, match="'socket' is undefined"):
        render("nginx-site.j2", name="x", server_name="_", current="/x", upstream=[], balancers=[])


# Plans: facts in, plans out, for every step.

def converged_facts(s=S):
    """CONVERGED with every managed file as the tool would write it."""
    from tasks.readers import FileFact
    f = parse(CONVERGED)
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


def test_a_converged_server_plans_nothing_and_every_step_says_why():
    f = converged_facts()
    same = sources.Source("feedface", "0123456789abcdef")
    assert packages.plan(S, f).changes == [] and packages.plan(S, f).ok == "4 packages present"
    assert app.plan(S, f, same).changes == []
    assert app.plan(S, f, same).ok == "release 20260101T000000Z-aaaaaaaa is live"
    assert supervisor.plan(S, f).ok == "hello-world running (pid 4242), program unchanged"
    assert nginx.plan(S, f).changes == [] and nginx.plan(S, f).ok.startswith("site unchanged")
    assert firewall.plan(S, f).ok == "ufw active, 2 rules present (2222/tcp, 80/tcp)"
    for plan in (packages.plan(S, f), app.plan(S, f, same), supervisor.plan(S, f),
                 nginx.plan(S, f), firewall.plan(S, f)):
        assert plan.changes == [] and plan.ok


def test_packages_plan_one_apt_command_refreshing_stale_lists():
    live = facts_for(S, os_id="debian", packages={"nginx": True}, apt_age=None,
                     current_hash="c0ffee")
    (command,) = packages.plan(S, live).changes
    assert command.said == "installed python3-venv, supervisor, ufw"
    # apt runs in a systemd service of its own, so a lost connection cannot cut it short
    assert "systemd-run --quiet --wait --collect --unit=fab-hello-world.apt-" in command.script
    inner = command.script.split(" sh -c ", 1)[1]
    assert inner.index("apt-get -q update") < inner.index("install python3-venv")
    assert "dpkg" not in inner and "apt-later" not in command.script


def test_packages_on_a_fresh_server_install_what_the_app_needs_first_the_rest_beside_it():
    fresh = facts_for(S, os_id="debian", apt_age=None)
    (command,) = packages.plan(S, fresh).changes
    assert command.said == ("installed python3-venv, installing nginx, supervisor, ufw in the "
                            "background")
    waited, started = command.script.split("|| exit $?\n")
    assert "--wait" in waited and "install python3-venv" in waited and "nginx" not in waited
    assert "--wait" not in started and "--unit=fab-hello-world.apt-later-" in started
    # the lists are fresh by then: refreshed only if a download fails
    assert "apt-get -q update" not in started.split("install nginx supervisor ufw")[0]
    # the database's engine is installed first too: the database step runs beside the rest
    pg = load(Config(overrides={"app": {"database": "postgresql"}}))
    (command,) = packages.plan(pg, facts_for(pg, os_id="debian", apt_age=None)).changes
    assert command.said.startswith("installed postgresql, python3-venv, installing nginx")
    # nothing the app needs is missing: nothing to install beside, so all at once
    bare = facts_for(S, os_id="debian", apt_age=None, packages={"python3-venv": True})
    assert packages.plan(S, bare).changes[0].said == "installed nginx, supervisor, ufw"


def test_work_in_the_background_leaves_its_status_and_output_for_awaited(tmp_path, monkeypatch):
    import subprocess

    from tasks import units as core
    monkeypatch.setattr(core, "WORK_DIR", str(tmp_path))
    result = core.result_file("fab-x.apt-later")

    def collect():
        return subprocess.run(["sh", "-c", core.awaited("fab-x.apt-later", 5)],
                              capture_output=True, text=True)
    subprocess.run(["sh", "-c", core.recording("set -e\necho apt said\necho installed a, b",
                                               result)], check=True)
    done = collect()
    assert (done.returncode, done.stdout) == (0, "apt said\ninstalled a, b\n")
    assert list(tmp_path.iterdir()) == []  # collected once
    subprocess.run(["sh", "-c", core.recording("set -e\necho E: no nginx >&2\nfalse\necho x",
                                               result)], check=True)
    failed = collect()
    assert (failed.returncode, failed.stderr) == (1, "E: no nginx\n")
    (tmp_path / "fab-x.apt-later.result.out").write_text("")  # a unit stopped mid-way
    stopped = collect()
    assert stopped.returncode == 1 and "fab-x.apt-later ended without a result" in stopped.stderr
    assert list(tmp_path.iterdir()) == []


def test_packages_repair_an_interrupted_dpkg_first_even_with_nothing_missing():
    f = facts_for(S, os_id="debian", packages=dict.fromkeys(needs(S).packages, True), apt_age=5,
              dpkg_interrupted=True)
    (command,) = packages.plan(S, f).changes
    assert command.said == "repaired an interrupted dpkg (dpkg --configure -a)"
    assert "--configure -a" in command.script and "install" not in command.script.split(
        " sh -c ", 1)[1].replace("install -d", "")
    f.packages["nginx"] = False
    (command,) = packages.plan(S, f).changes
    assert command.said.endswith(", installed nginx")
    inner = command.script.split(" sh -c ", 1)[1]
    assert inner.index("--configure -a") < inner.index("install nginx")


def test_app_plans_a_release_only_for_new_code_and_a_venv_only_for_new_requirements():
    f = converged_facts()
    code_only = app.plan(S, f, sources.Source("c0ffee", "0123456789abcdef", "upload 3 files"),
                         rid="20270101T000000Z-c0ffee00")
    assert said(code_only) == ["released 20270101T000000Z-c0ffee00"]
    # the release as named changes, each shown in a dry run
    assert [change.would for change in code_only.changes] == [
        "upload 3 files as release 20270101T000000Z-c0ffee00",
        "build release 20270101T000000Z-c0ffee00 as fab-build-hello-world, then seal it root's",
        "switch to release 20270101T000000Z-c0ffee00, checked by a candidate",
        "keep the newest 5 releases"]
    new_reqs = app.plan(S, f, sources.Source("c0ffee", "fedcba9876543210"), rid="r")
    assert said(new_reqs) == ["released r with new virtualenv fedcba9876543210"]
    assert new_reqs.changes[1].would == ("build release r and virtualenv fedcba9876543210 as "
                                         "fab-build-hello-world, then seal it root's")
    migrating = dataclasses.replace(S, release_command="flask db upgrade")
    phase = app.plan(migrating, f, sources.Source("c0ffee", "0123456789abcdef"), rid="r")
    assert phase.changes[2].would.startswith("run `flask db upgrade` in it before traffic")


def test_app_restarts_the_live_app_covered_when_only_its_environment_changed(tmp_path):
    env = tmp_path / "prod.env"
    env.write_text("API_KEY=s3cret\n")
    s = load(Config(overrides={"app": {"env_file": str(env)}}))
    plan = app.plan(s, converged_facts(s), sources.Source("feedface", "0123456789abcdef"))
    upload, restart = plan.changes
    assert (upload.path, upload.owner, upload.group, upload.mode) == \
        ("/etc/hello-world/env", "root", "hello-world", "0640")
    assert upload.shown(upload.content) == "API_KEY=****\n"
    assert upload.said == "updated the app's environment" and restart.run is switch.restart


def test_a_fresh_server_gets_system_accounts_and_a_first_release_of_a_git_source():
    g = load(Config(overrides={"app": {"name": "shop",
                                       "source": "https://git.example.org/shop.git"}}))
    plan = app.plan(g, facts_for(S), sources.Source(None, None))
    assert said(plan)[0] == "created the app's account shop"
    script = plan.changes[0].script
    for account, comment in (("shop", "'fab app shop'"),
                             ("fab-build-shop", "'fab builds shop'")):
        assert ("useradd --system --user-group --shell /usr/sbin/nologin --home-dir /nonexistent "
                f"--no-create-home --comment {comment} {account}") in script
    assert "grep -qsxF fab-build-shop /etc/cron.deny || echo fab-build-shop >> /etc/cron.deny" \
        in script
    assert "install -d -o root -g root -m 755 /srv/shop" in script
    assert said(plan)[-1].startswith("released <time>-<commit>")


def test_a_tree_the_app_user_can_write_or_an_app_user_with_sudo_is_refused():
    f = converged_facts()
    f.modes["/srv"] = ("root", "hello-world", "775")
    with pytest.raises(DeployError, match="/srv is writable by the app user hello-world "
                                          r"\(root:hello-world 775\)"):
        app.plan(S, f, sources.Source("feedface", "0123456789abcdef"))
    f.user_groups = {"hello-world"}
    f.modes["/srv"] = ("root", "root", "1777")
    with pytest.raises(DeployError, match="/srv is writable by the app user"):
        app.plan(S, f, sources.Source("feedface", "0123456789abcdef"))
    tom = load(Config(overrides={"app": {"user": "tom"}}))
    f = converged_facts(tom)
    f.user_groups = {"tom", "sudo"}
    with pytest.raises(DeployError, match="app.user=tom is in group sudo, so the app could "
                                          "become root"):
        app.plan(tom, f, sources.Source("feedface", "0123456789abcdef"))


def test_an_older_deployment_moves_to_the_apps_own_account_and_says_so():
    f = converged_facts()
    f.program_conf = {"user": "tom", "directory": "/home/tom/hello-world/current"}
    f.current_hash = ""
    plan = app.plan(S, f, sources.Source("c0ffee", "0123456789abcdef"), rid="r")
    assert ", ".join(said(plan)) == (
        "released r, moved the app from user tom and /home/tom/hello-world to user hello-world "
        "and /srv/hello-world (the old tree stays, for you to remove: its logs are in "
        "/var/log/hello-world)")


def test_the_venv_is_built_by_the_build_account_then_sealed_and_markers_never_follow_links():
    lines = release.release_script(S, [], "r", "h", "v" * 16, True)
    text = "\n".join(lines)
    build = next(line for line in lines if line.startswith("build()"))
    assert "systemd-run --quiet --wait --pipe --collect --uid=fab-build-hello-world" in build
    assert all(f"-p {p}" in build for p in release.BUILD_SANDBOX)
    assert '-p "ReadWritePaths=$release"' in build
    assert "-p RuntimeMaxSec=900" in build
    venv = "/srv/hello-world/venvs/vvvvvvvvvvvvvvvv"
    pip = lines.index(f"  build {venv}/bin/python \"$whl/pip\" install -q "
                      "--disable-pip-version-check -r \"$release/requirements.txt\" $extra")
    assert lines.index('chown -hR fab-build-hello-world:fab-build-hello-world "$release"') < pip
    assert pip < lines.index('chown -hR root:root "$release"')
    for path in ('"$release"', venv):
        assert f"chown -hR root:root {path}" in lines and f"chmod -R go-w,ug-s {path}" in lines
    marker = 'rm -rf "$release/.fab-release" "$release/.fab-release.new" "$release/.venv"'
    assert lines.index(marker) > lines.index(f"chown -hR root:root {venv}")
    assert "ln -sfn" in lines[lines.index(marker) + 1] and "printf" in lines[-3]
    assert lines.index('chown -hR root:hello-world "$release"') < lines.index(marker)
    assert " pip install" not in text.replace("build ", "").replace('"$whl/pip"', "")


def test_a_git_password_reaches_git_only_through_its_credential_file():
    g = load(Config(overrides={"app": {"source": "https://d:s3cr3t@git.example.org/x.git"}}))
    script = sources.git_resolve_script(g)
    assert "s3cr3t" not in script
    assert "credential.helper='store --file=/srv/hello-world/repo.git.credentials'" in script
    assert "clone --quiet --mirror -- https://git.example.org/x.git" in script


def test_supervisor_loads_a_changed_program_covered_only_while_serving():
    f = converged_facts()
    f.files[S.supervisor_conf] = f.files[S.supervisor_conf]._replace(sha256="old")
    (program,) = supervisor.plan(S, f).changes  # written only once its candidate is healthy
    assert program.said == "updated /etc/supervisor/conf.d/hello-world.conf"
    assert program.install is supervisor.load_covered
    f.running = {"hello-world": Program("FATAL", 0)}
    upload, load = supervisor.plan(S, f).changes
    assert isinstance(load, Command) and "supervisorctl update hello-world" in load.script
    f = converged_facts()
    f.running = {"hello-world": Program("STOPPED", 0)}
    assert said(supervisor.plan(S, f)) == ["started hello-world"]


def test_nginx_removes_the_default_site_and_makes_a_certificate_before_the_site():
    f = converged_facts()
    f.links["/etc/nginx/sites-enabled/default"] = "/etc/nginx/sites-available/default"
    (site,) = nginx.plan(S, f).changes
    assert site.said == "removed the default site" and site.path == S.nginx_site
    tls = nginx.plan(TLS, converged_facts(TLS))
    assert said(tls) == ["made a self-signed certificate in /etc/hello-world/tls"]
    assert tls.changes[1].path == TLS.nginx_site  # the site is installed again, after it
    assert "ec_paramgen_curve:prime256v1" in tls.changes[0].script


def test_letsencrypt_serves_the_challenge_before_asking_and_shows_the_request():
    plan = nginx.plan(LETSENCRYPT, converged_facts(LETSENCRYPT))
    serve_http, certbot, site = plan.changes
    assert isinstance(serve_http, Call) and "certbot certonly --webroot" in certbot.script
    assert certbot.would == "request a Let's Encrypt certificate for example.org"


def test_firewall_allows_ssh_before_enabling_behind_a_dead_man_switch():
    plan = firewall.plan(S, facts_for(S, ssh_port=2222))
    allow, enable, boot = plan.changes
    assert allow.script.splitlines()[0] == "ufw allow 2222/tcp >/dev/null"
    assert enable.said == "enabled ufw" and enable.run is firewall.enable
    assert "--on-active=120 /usr/sbin/ufw --force disable" in firewall.enable_script(S)
    assert boot.said == "enabled ufw at boot"


def test_harden_proves_key_login_before_the_change_even_in_a_dry_run():
    from tasks.steps import harden
    assert harden.plan(harden.WANTED).ok == "password and root login already off"
    prove, change = harden.plan({"permitrootlogin": "yes"}).changes
    assert prove.read_only and prove.run is harden.prove_key_login and not change.read_only
    assert "sshd -t" in harden.apply_script("PermitRootLogin no\n", 120)


def test_rollback_plans_a_covered_switch_or_says_why_not():
    f = parse(CONVERGED)
    (switch_back,) = deploy.rollback_plan(S, f).changes
    assert switch_back.said == "20260101T000000Z-aaaaaaaa -> 20250101T000000Z-bbbbbbbb"
    assert deploy.rollback_plan(S, f, "20260101T000000Z-aaaaaaaa").ok == \
        "20260101T000000Z-aaaaaaaa is already live"
    with pytest.raises(DeployError, match="no release 'nope'"):
        deploy.rollback_plan(S, f, "nope")


class RecordingHost:
    """Just enough of a Host to see what the applier runs."""

    def __init__(self, dry_run, facts):
        self.dry_run, self.facts, self.name, self.ran = dry_run, facts, "web1", []

    def change(self, script, timeout=None):
        self.ran.append(script)

    def put(self, content, path, *args):
        self.ran.append(f"put {path}")


def test_a_dry_run_runs_nothing_and_says_the_same_as_a_real_run(capsys):
    plan = packages.plan(S, facts_for(S, os_id="debian", apt_age=0, current_hash="c0ffee"))
    dry = RecordingHost(True, facts_for(S))
    assert apply(dry, plan) == ("changed", "installed nginx, python3-venv, supervisor, ufw")
    assert dry.ran == []
    real = RecordingHost(False, facts_for(S))
    assert apply(real, plan) == apply(dry, plan) and len(real.ran) == 1
    assert apply(real, Plan(ok="nothing to do")) == ("ok", "nothing to do")


def test_every_fact_is_declared_with_its_shell_and_parser():
    from dataclasses import fields
    text = script(S, needs(S))
    for f in fields(Facts):
        assert (f'echo "$mark {f.name}"\n' in text) == (f.name != "needs")
        assert ("fact" in f.metadata) == (f.name != "needs")
    assert facts_module.parse(answer("")) == Facts()  # every fact has a default


def test_static_anywhere_and_only_one_default_site_per_server():
    shop = load(Config(overrides={"app": {"name": "shop", "static_dir": "shop/static",
                                          "static_url": "/assets/", "default_server": False,
                                          "server_name": "shop.example.org"}}))
    site = render_site(shop)
    assert "location /assets/ {\n        alias /srv/shop/current/shop/static/;" in site
    assert "default_server" not in site and "listen 80;" in site
    assert "listen 80 default_server;" in render_site(S)
    assert (shop.site_host, S.site_host) == ("shop.example.org", "")


def test_gunicorn_and_extra_packages_are_part_of_the_venv_and_its_hash(tmp_path):
    (tmp_path / "requirements.txt").write_text("flask==3.1.3\n")
    drivers = load(Config(overrides={"app": {"packages": "pymysql cryptography"}}))
    assert sources.requirements_hash(tmp_path, S) != sources.requirements_hash(tmp_path, drivers)
    lines = release.release_script(drivers, [], "r", "h", "v" * 16, True)
    assert "extra='pymysql cryptography'" in lines and "set -f" in "\n".join(lines)
    assert any(line.endswith(f'|| extra="$extra {sources.GUNICORN}"') for line in lines)


def test_https_stays_open_while_another_apps_site_uses_it():
    f = parse(CONVERGED)
    f.ufw_rules.add("allow 443/tcp")
    assert firewall.rule_changes(S, f)[1] == ["allow 443/tcp"]
    f.other_tls_sites = True
    assert firewall.rule_changes(S, f)[1] == []


def test_shared_paths_are_linked_into_each_release_and_made_by_the_app_user():
    s = load(Config(overrides={"app": {"shared_paths": "logs/ instance/ app.db"}}))
    lines = release.link_shared(s)
    assert "runuser -u hello-world -- mkdir -p /srv/hello-world/shared/logs" in lines
    assert 'ln -s /srv/hello-world/shared/app.db "$release"/app.db' in lines
    assert not any(line.startswith(("install", "chown", "mkdir -p /srv")) for line in lines)
    script = release.release_script(s, ["UNPACK"], "r", "h", "v" * 16, True)
    assert script.index("UNPACK") < script.index(lines[0]) < \
        script.index('chown -hR fab-build-hello-world:fab-build-hello-world "$release"')
    assert release.link_shared(S) == []


def test_extra_processes_are_programs_of_the_same_release_with_the_apps_environment():
    s = load(Config(overrides={"app": {"processes": {"worker": "rq worker shop-tasks"}}}))
    conf = supervisor.render_conf(s)
    worker = conf.split("[program:hello-world-worker]")[1]
    assert "directory=/srv/hello-world/current" in worker and "user=hello-world" in worker
    assert "/etc/hello-world/gunicorn.conf.py sh -c 'rq worker shop-tasks'" in worker
    assert "stdout_logfile=/var/log/hello-world/worker.log" in worker
    script = switch.switch_script(s, "r")
    assert script.index("' hello-world\n") < script.index(
        "supervisorctl restart hello-world-worker >/dev/null")  # a worker waits startsecs
    before_the_worker = switch.switch_script(s, "r", loaded=["hello-world"])
    assert before_the_worker.endswith("' hello-world") and "supervisorctl" not in before_the_worker
    f = converged_facts(s)
    f.programs = ["hello-world", "hello-world-old"]  # a process that was removed
    assert supervisor.update_script(s, f).endswith(
        "supervisorctl update hello-world hello-world-old hello-world-worker >/dev/null")
    from tasks.config import ConfigError, validate
    for bad in ({"Worker!": "x"}, {"all": "x"}, {"worker": "two\nlines"}, "worker: x"):
        with pytest.raises(ConfigError, match="app.processes"):
            validate(Config(overrides={"app": {"processes": bad}}))


def test_programs_left_on_another_release_are_restarted_covered_on_the_live_one():
    f = converged_facts()
    same = sources.Source("feedface", "0123456789abcdef")
    old = "/srv/hello-world/releases/20250101T000000Z-bbbbbbbb"
    f.running["hello-world"] = f.running["hello-world"]._replace(release=old)
    (restart,) = app.plan(S, f, same).changes
    assert restart.run is switch.restart
    assert restart.said == ("restarted hello-world on the live release 20260101T000000Z-aaaaaaaa "
                            "(they still ran 20250101T000000Z-bbbbbbbb: a switch was interrupted)")
    # a process that changed folder on its own is not judged; a deleted release is
    f.running["hello-world"] = f.running["hello-world"]._replace(release="/tmp")
    assert app.plan(S, f, same).changes == []
    f.running["hello-world"] = f.running["hello-world"]._replace(release=old + " (deleted)")
    assert switch.stale_programs(S, f.running, "20260101T000000Z-aaaaaaaa") == {
        "hello-world": "20250101T000000Z-bbbbbbbb"}


def test_what_an_interrupted_run_half_built_is_removed_first():
    f = converged_facts()
    f.half_built = ["release 20270101T000000Z-cccccccc", "venv fedcba9876543210"]
    (cleanup,) = app.plan(S, f, sources.Source("feedface", "0123456789abcdef")).changes
    assert cleanup.script == ("rm -rf -- /srv/hello-world/releases/20270101T000000Z-cccccccc "
                              "/srv/hello-world/venvs/fedcba9876543210")
    assert "interrupted run" in cleanup.said
    assert parse("@@half_built\nrelease x\nvenv y\n").half_built == ["release x", "venv y"]


def test_a_release_that_would_not_fit_is_refused_before_anything_changes():
    from tasks.readers import Disk
    f = converged_facts()
    f.venvs = {"0123456789abcdef": 40 * 1024}
    f.disk = Disk(1024 * 1024, 50 * 1024)  # 50 MB free
    code_only = sources.Source("new", "0123456789abcdef", size_kb=2048)
    assert said(app.plan(S, f, code_only))[-1].startswith("released ")  # 2 + 32 MB fits
    new_reqs = sources.Source("new", "ffffffffffffffff", size_kb=2048)
    with pytest.raises(DeployError) as e:
        app.plan(S, f, new_reqs)
    assert str(e.value).startswith("not enough disk space for a new release: 50 MB free where "
                                   "/srv/hello-world lives, about 74 MB needed (the code 2 MB, "
                                   "a new virtualenv ~40 MB, 32 MB spare)")
    assert parse("@@disk\n1000 200\n").disk == (1000, 200) and parse("@@disk\n").disk is None


def test_the_lock_takes_over_only_from_a_session_that_is_gone():
    """The lock's shell logic, run here: a live process is alive; one that ended, the same
    pid with another start time (a reused pid), or no pid at all is gone."""
    import subprocess

    from tasks.lock import SESSION
    me = 'echo "$$:$(stat_of $$ | cut -d" " -f20)"'
    ended = subprocess.run(["sh", "-c", SESSION + me], capture_output=True, text=True)
    pid, start = ended.stdout.strip().split(":")
    own = subprocess.run(["sh", "-c", SESSION + f'alive "$({me})" && echo alive'],
                         capture_output=True, text=True).stdout
    assert own.strip() == "alive" and start.isdigit()
    check = SESSION + 'alive "$1" && echo alive || echo gone'
    for session in (f"{pid}:{start}", f"1:{int(start) + 999999}", "4194000:1", ""):
        out = subprocess.run(["sh", "-c", check, "sh", session], capture_output=True,
                             text=True).stdout.strip()
        assert out == "gone", session
    script = lock.acquire_script(S, "tok", "tom@laptop")
    assert script.index("flock") < script.index("took-over") < script.index("mkdir")
    assert "--state=active,activating,deactivating 'fab-hello-world.*'" in script
    assert script.index("acquired") < script.index("busy")


def test_a_rollback_finishes_what_an_interrupted_one_left_instead_of_going_further_back():
    f = converged_facts()
    f.candidates = ["hello-world-candidate-0123abcd.service"]
    plan = deploy.rollback_plan(S, f)
    assert [c.said for c in plan.changes] == [
        "stopped hello-world-candidate-0123abcd.service (an interrupted run's)"]
    f.candidates = []
    f.running["hello-world"] = f.running["hello-world"]._replace(
        release="/srv/hello-world/releases/20250101T000000Z-bbbbbbbb")
    (restart,) = deploy.rollback_plan(S, f).changes
    assert restart.run is switch.restart
    assert deploy.rollback_plan(S, f, to="20260101T000000Z-aaaaaaaa").ok.endswith("already live")


from tasks.steps.database import SCHEMES  # noqa: E402

PG = load(Config(overrides={"app": {"database": "postgresql", "redis": True}}))
MY = load(Config(overrides={"app": {"database": "mysql"}}))
LITE = load(Config(overrides={"app": {"database": "sqlite"}}))


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


def test_a_database_is_planned_on_a_fresh_server_and_is_ok_when_converged():
    from tasks.steps import database
    fresh = converged_facts(PG)
    plan = database.plan(PG, fresh)
    assert [c.said for c in plan.changes] == [
        "", "started postgresql",
        "set up the postgresql database hello_world on localhost, redis on localhost"]
    assert "Restart=on-failure" in plan.changes[0].script
    assert database.plan(PG, database_facts()).changes == []
    assert database.plan(PG, database_facts()).ok == (
        "postgresql database hello_world on localhost, redis on localhost ready")
    assert "postgresql" in needs(PG).packages and "redis-server" in needs(PG).packages
    assert "mariadb-server" in needs(MY).packages and "sqlite3" in needs(LITE).packages


def test_passwords_are_made_on_the_server_and_reach_clients_only_on_stdin():
    from tasks.steps import database
    for s in (PG, MY):
        script = database.setup_script(s, converged_facts(s))
        assert "secrets.token_hex" in script and "PASSWORD '$pw'" in script.replace(
            "IDENTIFIED BY '$pw'", "PASSWORD '$pw'")
        for line in script.splitlines():  # only heredocs (stdin) and printf (a builtin)
            if "$pw" in line or "$rp" in line:
                assert not line.startswith(("psql", "mysql", "runuser", "echo")), line
        assert "chown root:hello-world /etc/hello-world/database.env.fab-new" in script
        assert "chmod 0640" in script and "umask 077" in script


def test_the_engine_of_an_app_with_data_is_never_changed():
    from tasks.steps import database
    f = database_facts(PG)
    with pytest.raises(DeployError) as e:
        database.plan(MY, f)
    assert str(e.value).startswith("app.database=mysql, but the app's data is in its "
                                   "postgresql database hello_world")
    assert "never moves or drops it" in str(e.value)
    none = load(Config(overrides={"app": {}}))
    with pytest.raises(DeployError):
        database.plan(none, f)


def test_an_env_file_with_database_url_wins_over_a_local_database(tmp_path):
    from tasks.steps import database
    env = tmp_path / "prod.env"
    env.write_text("SECRET_KEY=x\nDATABASE_URL=postgresql://u:p@db.example.org/shop\n")
    s = load(Config(overrides={"app": {"database": "postgresql", "env_file": str(env)}}))
    assert s.managed_database == "none" and "postgresql" not in needs(s).packages
    assert database.plan(s, converged_facts(s)).ok == \
        "DATABASE_URL from app.env_file (an external database)"


def test_the_driver_joins_the_venv_unless_the_app_pins_its_own():
    assert sources.extras_line(PG).endswith(b"psycopg2-binary==2.9.10")
    assert sources.extras_line(MY).endswith(b"PyMySQL==1.1.1")
    assert sources.extras_line(S).endswith(b"gunicorn==23.0.0")
    script = "\n".join(release.release_script(PG, [], "r", "h", "v" * 16, True))
    assert "'^[[:space:]]*psycopg2(-binary)?([^A-Za-z0-9_.-]|$)'" in script
    assert 'extra="$extra psycopg2-binary==2.9.10"' in script


def test_backups_are_root_only_named_by_time_and_release_and_pruned():
    from tasks.backups import NAME_RE, backup_script, restore_script
    script = backup_script(PG)
    assert "umask 077" in script and "install -d -o root -g root -m 0700 /srv/hello-world/" \
        "backups" in script
    assert "pg_dump -Fc -d hello_world" in script and "head -n -10" in script
    assert "mysqldump --single-transaction" in backup_script(MY)
    lite = backup_script(LITE)
    assert "src.backup(dst)" in lite and "runuser -u hello-world -- python3" in lite
    assert NAME_RE.fullmatch("20261127T120000Z-20261127T110000Z-abcd1234.pgdump")
    assert not NAME_RE.fullmatch("../../etc/shadow") and not NAME_RE.fullmatch("x.pgdump")
    restore = restore_script(PG, "20261127T120000Z-none.pgdump")
    assert restore.index("supervisorctl stop hello-world") < restore.index("DROP DATABASE")
    assert "pg_restore --no-owner --role=hello_world -d hello_world" in restore


def test_the_backup_name_pattern_is_the_same_for_python_and_grep():
    import subprocess

    from tasks.backups import NAME_RE
    names = "20261127T120000Z-none.pgdump\nx.pgdump\n20261127T120000Z-r.sql.gz\n"
    out = subprocess.run(["grep", "-E", NAME_RE.pattern], input=names, capture_output=True,
                         text=True).stdout.split()
    assert out == [n for n in names.split() if NAME_RE.fullmatch(n)] and len(out) == 2


def test_a_gone_runs_lock_is_taken_over_quietly_unless_it_had_begun_changing(tmp_path,
                                                                            monkeypatch):
    """The lock's shell logic, run here on a directory of its own: a dead holder's lock is
    taken (said only if the holder had marked it changing); a live holder blocks, at once
    when it is changing, after two seconds when it is not (a run whose session is closing)."""
    import subprocess
    import time

    monkeypatch.setattr(lock, "WORK_DIR", str(tmp_path))
    held = tmp_path / "hello-world.lock"

    def acquire(token):
        script = lock.acquire_script(S, token, f"{token}@laptop", then="echo then-ran")
        out = subprocess.run(["sh", "-c", script.replace("-o root -g root ", "")],
                             capture_output=True, text=True, check=True).stdout
        return out.split()

    assert acquire("one") == ["acquired", "then-ran"]
    (held / "session").write_text("4194000:1\n")  # a session that is gone
    assert acquire("two") == ["acquired", "then-ran"]
    subprocess.run(["sh", "-c", lock.changing_script(S, "nottwo")], check=True)
    assert not (held / "changing").exists()  # only the holder's token marks it
    subprocess.run(["sh", "-c", lock.changing_script(S, "two")], check=True)
    assert (held / "changing").exists()
    (held / "session").write_text("4194000:1\n")
    assert acquire("three") == ["took-over", "two@laptop", "acquired", "then-ran"]

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        start = open(f"/proc/{sleeper.pid}/stat").read().rsplit(")", 1)[1].split()[19]
        (held / "session").write_text(f"{sleeper.pid}:{start}\n")
        began = time.monotonic()
        assert acquire("four") == ["held", "three@laptop"]
        assert time.monotonic() - began > 1.5  # it waited for a quiet holder to end
        (held / "changing").touch()
        began = time.monotonic()
        assert acquire("four") == ["held", "three@laptop"]
        assert time.monotonic() - began < 1.5  # a changing holder blocks at once
    finally:
        sleeper.kill()


def test_a_steps_local_work_runs_before_the_server_is_read_and_its_failure_is_the_steps():
    """Step.prepare (hashing the app's folder) runs for the steps that apply; a failure there
    is recorded as that step failed and stops the run before anything reaches the server."""
    from tasks.host import Host
    from tasks.plan import Step, StepFailed, prepare

    h = Host(type("C", (), {"host": "web1", "original_host": "web1"})(), S)
    seen = []

    def broken(host):
        raise DeployError("the app folder /nowhere does not exist (set app.source)")
    steps = [Step("skipped", None, applies=lambda host: False, prepare=seen.append),
             Step("hashed", None, prepare=seen.append), Step("app", None, prepare=broken),
             Step("never", None, prepare=seen.append)]
    with pytest.raises(StepFailed):
        prepare(h, steps)
    assert seen == [h] and h.run.round_trips == 0
    assert [(o.step, o.status, o.message) for o in h.run.outcomes] == [
        ("app", "failed", "the app folder /nowhere does not exist (set app.source)")]

"""The supervisor and nginx steps, and TLS: what the tutorial asks for, rendered strictly."""


import pytest
from invoke import Config

from tasks import switch
from tasks.config import load
from tasks.plan import Call, Command
from tasks.readers import Program
from tasks.site import render_site
from tasks.steps import nginx, supervisor
from tests.unit.stack import LETSENCRYPT, TLS, S, converged_facts, said


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


def test_static_anywhere_and_only_one_default_site_per_server():
    shop = load(Config(overrides={"app": {"name": "shop", "static_dir": "shop/static",
                                          "static_url": "/assets/", "default_server": False,
                                          "server_name": "shop.example.org"}}))
    site = render_site(shop)
    assert "location /assets/ {\n        alias /srv/shop/current/shop/static/;" in site
    assert "default_server" not in site and "listen 80;" in site
    assert "listen 80 default_server;" in render_site(S)
    assert (shop.site_host, S.site_host) == ("shop.example.org", "")


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

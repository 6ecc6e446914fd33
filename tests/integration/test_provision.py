"""`fab provision` on real servers, checked from outside.

The module's tests share one provisioned server and run in order: the read-only
checks first, then the second run, the workers change and the reboot.
"""

import json
import shutil
import socket

import pytest

from tests.conftest import PROJECT, boot, destroy, fab, http_get, infra, on, recap

first_runs = {}


@pytest.fixture(scope="module")
def provisioned():
    s = boot()
    try:
        first_runs[s.name] = fab("-H", s.name, "provision", check=True)
        yield s
    finally:
        destroy(s)


def pids(s):
    master = on(s, "supervisorctl pid hello-world").strip()
    nginx = on(s, "cat /run/nginx.pid").strip()
    return master, nginx


def test_first_run_reports_every_step_changed_and_a_recap(provisioned):
    proc = first_runs[provisioned.name]
    out = proc.stdout
    lines = [line.split("] ", 1)[1] for line in out.splitlines()
             if line.startswith(f"[{provisioned.name}] ")]
    steps = [line.split()[0] for line in lines if line.split()[1] == "changed"]
    # apt installs what only the later steps use while the app is built, then the run
    # waits for it: its own line, before supervisor needs it
    assert steps == ["packages", "app", "packages", "supervisor", "nginx", "firewall"]
    assert lines[0].startswith("packages    changed  installed python3-venv, installing nginx, "
                               "supervisor, ufw in the background")
    assert lines[2].startswith("packages    changed  installed nginx, supervisor, ufw "
                               "(in the background)")
    assert recap(proc, provisioned.name) == "ok=0 changed=6 failed=0"


def test_serves_hello_world_through_nginx(provisioned):
    status, headers, body = http_get(provisioned)
    assert (status, body) == (200, "Hello world")
    assert headers["Server"] == "nginx"  # server_tokens off: no version


def test_static_files_come_from_nginx_with_a_30_day_expiry(provisioned):
    status, headers, body = http_get(provisioned, "/static/style.css")
    assert status == 200 and "font-family" in body
    assert headers["Cache-Control"] == "max-age=2592000"
    assert "Expires" in headers


def test_gunicorn_listens_on_a_socket_only_the_app_and_nginx_reach(provisioned):
    host = infra(provisioned)
    assert host.socket("unix:///srv/hello-world/run/gunicorn.sock").is_listening
    run = host.file("/srv/hello-world/run")
    assert (run.user, run.group, run.mode) == ("hello-world", "www-data", 0o750)
    gunicorn = on(provisioned, "pgrep -f bin/gunicorn | head -n1").strip()
    assert on(provisioned, f"ss -Htlnp | grep -c 'pid={gunicorn},' || true").strip() == "0"
    with pytest.raises(OSError):
        socket.create_connection((provisioned.address, 8000), timeout=3)


def test_gunicorn_runs_as_the_app_user_with_four_workers(provisioned):
    host = infra(provisioned)
    gunicorn = [p for p in host.process.filter() if "bin/gunicorn" in p.args]
    assert {p.user for p in gunicorn} == {"hello-world"}
    master = int(on(provisioned, "supervisorctl pid hello-world"))
    assert len([p for p in gunicorn if p.ppid == master]) == 4


def test_nginx_default_site_is_gone_and_config_is_valid(provisioned):
    host = infra(provisioned)
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    assert host.file("/etc/nginx/sites-enabled/hello-world").linked_to == \
        "/etc/nginx/sites-available/hello-world"
    assert host.run("nginx -t").rc == 0


def test_managed_files_have_owner_and_mode(provisioned):
    host = infra(provisioned)
    for path in ("/etc/supervisor/conf.d/hello-world.conf",
                 "/etc/nginx/sites-available/hello-world"):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    code = host.file("/srv/hello-world/current/app.py")
    # the app cannot rewrite its own code, and no other account reads it
    assert (code.user, code.group, code.mode) == ("root", "hello-world", 0o640)
    assert host.file("/var/log/hello-world").group == "hello-world"
    assert ".fab-" not in on(provisioned, "ls -a /tmp")  # every temp upload was cleaned up


def test_firewall_is_on_and_blocks_everything_but_ssh_and_http(provisioned):
    status = on(provisioned, "ufw status")
    assert "Status: active" in status
    # something listening on another port inside is still unreachable from outside
    on(provisioned, "systemd-run --unit=probe9999 python3 -m http.server 9999")
    try:
        assert "9999" in on(provisioned, "sleep 1; ss -ltn")
        with pytest.raises(OSError):
            socket.create_connection((provisioned.address, 9999), timeout=3)
        socket.create_connection((provisioned.address, 22), timeout=3).close()
    finally:
        on(provisioned, "systemctl stop probe9999", check=False)


def test_second_run_changes_nothing_and_restarts_nothing(provisioned):
    before = pids(provisioned)
    proc = fab("-H", provisioned.name, "provision", check=True)
    assert recap(proc, provisioned.name) == "ok=5 changed=0 failed=0"
    assert pids(provisioned) == before
    # one round trip: the lock, the deploy log's line and the facts; the lock is given up
    # with the SSH session, and the next run takes it over without a word
    assert "(1 SSH round trip," in proc.stdout and "took over" not in proc.stdout
    again = fab("-H", provisioned.name, "provision", check=True)
    assert "lock        " not in again.stdout  # neither a note nor a failure
    log = on(provisioned, "tail -n 2 /var/log/fab/hello-world.jsonl").splitlines()
    assert [(e["action"], e["result"], e["changed"]) for e in map(json.loads, log)] == \
        [("provision", "ok", 0)] * 2


def test_fewer_workers_changes_only_supervisor(provisioned):
    proc = fab("-H", provisioned.name, "provision", env={"FABRIC_APP_WORKERS": "3"}, check=True)
    assert "] supervisor  changed" in proc.stdout
    assert recap(proc, provisioned.name) == "ok=4 changed=1 failed=0"
    master = int(on(provisioned, "supervisorctl pid hello-world"))
    workers = on(provisioned, f"pgrep -P {master} -c").strip()
    assert workers == "3"
    assert http_get(provisioned)[2] == "Hello world"


def test_broken_nginx_template_fails_at_nginx_and_the_old_config_serves(provisioned, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy,
                    ignore=shutil.ignore_patterns(".venv", ".sandbox", ".git", ".peers"))
    site = copy / "templates/nginx-site.j2"
    site.write_text(site.read_text().replace("proxy_redirect off;", "proxy_redirect off"))
    proc = fab("-H", provisioned.name, "provision", cwd=copy, check=False,
               env={"FABRIC_APP_WORKERS": "3"})
    assert proc.returncode != 0
    assert "] nginx       failed   nginx rejected the new config" in proc.stdout
    assert "[emerg]" in proc.stdout and "/etc/nginx/sites-enabled/hello-world" in proc.stdout
    assert "failed=1" in proc.stdout and "Traceback" not in proc.stderr
    assert http_get(provisioned)[2] == "Hello world"
    assert "proxy_redirect off;" in on(provisioned, "cat /etc/nginx/sites-available/hello-world")


def test_everything_comes_back_after_a_reboot(provisioned):
    import sandbox
    sandbox.reboot_server(provisioned.name)
    host = infra(provisioned)
    for service in ("supervisor", "nginx", "ufw"):
        assert host.service(service).is_enabled
    deadline_tries = 50
    for _ in range(deadline_tries):  # bounded: the app may need a moment after boot
        try:
            if http_get(provisioned, timeout=2)[2] == "Hello world":
                break
        except OSError:
            pass
        __import__("time").sleep(0.2)
    assert http_get(provisioned)[2] == "Hello world"
    assert "Status: active" in on(provisioned, "ufw status")

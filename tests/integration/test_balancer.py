"""The tutorial-shaped app (tests/apps/microblog) across five hosts by role (app.roles): a
balancer, two web hosts, a worker host running its worker process, and a database host
running PostgreSQL and Redis for them. One provision sets it all up (database host first,
balancer last); a rolling deploy with a migration goes one web host at a time out of the
balancer under load with no failed request, and a rollback takes every app host back; a
web host lost under load goes unnoticed; a worker release whose process dies is rolled
back; the database ports are open to the web and worker hosts only, HTTP on the web hosts
to the balancer only; app.schedule's job runs on the worker host alone.

The module's tests share the five servers and run in order. Five fresh servers take minutes:
the module runs in make test-slow; tests/integration/test_roles.py keeps a balancer and a web
host in make test."""

import json
import shutil
import socket
import time

import pytest
from invoke import Config

import sandbox
from tasks.config import load
from tests.conftest import boot, destroy, fab, http_get, on
from tests.integration.test_tutorial_app import APPS, version_two
from tests.load import Load

pytestmark = pytest.mark.slow

REDIS_PORT = load(Config(overrides={"app": {}})).redis_port  # the app's, on the database host
V1 = "v1 COMPILED BANNER posts=1 done=1"
V2 = "v2 COMPILED BANNER posts=1 done=1 authors=anonymous"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    servers = []
    try:
        servers += [boot() for _ in range(5)]
        db, web1, web2, worker, lb = servers
        app = tmp_path_factory.mktemp("fleet") / "microblog"
        shutil.copytree(APPS / "microblog", app)
        (app / "prod.env").write_text("SECRET_KEY=not-a-real-secret\nFLASK_APP=microblog.py\n")
        with (app / "deploy.yaml").open("a") as settings:  # under its `app:`
            settings.write(f"  database: postgresql\n  redis: true\n  roles:\n"
                           f"    db: [{db.name}]\n    web: [{web1.name}, {web2.name}]\n"
                           f"    worker: [{worker.name}]\n    lb: [{lb.name}]\n"
                           "  schedule:\n    tick: {when: '*:*:0/5', command: "
                           "'hostname >> logs/ticks'}\n")
        yield servers, ["-f", str(app / "deploy.yaml")], app
    finally:
        for s in servers:
            destroy(s)


def page_when(lb, text, seconds=30):
    """The page once it says TEXT (bounded wait: the worker works every half second)."""
    deadline, page = time.monotonic() + seconds, ""
    while time.monotonic() < deadline and page != text:
        page = http_get(lb)[2]
        time.sleep(0.5)
    return page


def reachable(server, address, port):
    """Whether SERVER can open a TCP connection to ADDRESS:PORT (3 s at most)."""
    return on(server, f"python3 -c \"import socket; socket.create_connection(('{address}', "
                      f"{port}), timeout=3)\" 2>/dev/null && echo open || echo closed",
              check=False).strip() == "open"


def test_one_provision_sets_up_the_database_then_the_app_hosts_then_the_balancer(fleet):
    (db, web1, web2, worker, lb), settings, _ = fleet
    proc = fab(*settings, "provision", check=True)  # no -H: every host of app.roles
    out = proc.stdout
    assert out.index(f"[{db.name}] database ") < out.index(f"[{web1.name}] app ") \
        < out.index(f"[{worker.name}] app ") < out.index(f"[{lb.name}] nginx ")
    assert out.count("ran `flask db upgrade`") == 1  # the release phase, once
    assert f"[{lb.name}] nginx       changed  wrote /etc/nginx/sites-available/hello-world " \
           "(balancing 2 web hosts)" in out
    for host in (db, worker, lb):
        assert f"[{host.name}] app " not in out or host is worker
        assert f"[{host.name}] nginx " not in out or host is lb
    password = on(db, "sed -n 's|^DATABASE_URL=[^:]*://[^:]*:\\([^@]*\\)@.*|\\1|p' "
                      "/etc/hello-world/database.env").strip()
    assert len(password) == 48 and password not in out + proc.stderr
    for app_host in (web1, web2, worker):
        env = on(app_host, "stat -c '%U:%G %a' /etc/hello-world/database.env; "
                           "cat /etc/hello-world/database.env")
        assert env.startswith("root:hello-world 640\n")
        assert f"@{db.address}:5432/hello_world" in env and \
            f"@{db.address}:{REDIS_PORT}/0" in env

    assert http_get(lb, "/add/hello")[2] == "added"  # a web host writes to the database host
    assert page_when(lb, V1) == V1  # and the worker host's process marked it done there
    assert "hello-world-worker" not in on(web1, "supervisorctl status")
    assert on(worker, "supervisorctl status").split()[:2] == ["hello-world-worker", "RUNNING"]
    assert on(worker, "ps -eo args | grep -c '[b]in/gunicorn'; true").strip() == "0"
    for web in (web1, web2):  # through the balancer, logged with the client's own address
        assert sandbox.GATEWAY in on(web, "cat /var/log/nginx/hello-world.access.log")
    installed = "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' %s 2>/dev/null " \
                "| grep '^ii'; true"
    assert on(lb, installed % "python3-venv supervisor postgresql").strip() == ""
    assert on(db, installed % "nginx python3-venv supervisor").strip() == ""
    assert on(worker, installed % "nginx postgresql redis-server").strip() == ""

    # app.schedule's job runs on the worker host alone, by its timer, every five seconds
    deadline, ticks = time.monotonic() + 30, []
    while time.monotonic() < deadline and len(ticks) < 2:
        time.sleep(1)
        ticks = on(worker, "cat /srv/hello-world/shared/logs/ticks 2>/dev/null; true").split()
    assert len(ticks) >= 2 and set(ticks) == {worker.name}, ticks
    for host in (db, web1, web2, lb):
        assert on(host, "ls /etc/systemd/system | grep -c 'fab:hello-world:'; true").strip() \
            == "0"

    rerun = fab(*settings, "provision", check=True)
    assert rerun.stdout.count("changed=0 failed=0") == 5
    status = fab(*settings, "status", check=True).stdout.splitlines()
    rows = {row.split()[0]: row for row in status[1:6]}
    assert rows[db.name].split()[1] == "(db)" and "postgresql" in rows[db.name]
    assert rows[worker.name].split()[1] == "(worker)" and "worker:RUNNING" in rows[worker.name]
    assert [rows[h.name].split()[1] for h in (web1, web2, lb)] == ["RUNNING", "RUNNING", "(lb)"]


def test_the_database_ports_are_open_to_the_app_hosts_only(fleet):
    (db, web1, _, worker, lb), _, _ = fleet
    for port in (5432, REDIS_PORT):
        with pytest.raises(OSError):  # from this machine
            socket.create_connection((db.address, port), timeout=3).close()
        assert not reachable(lb, db.address, port)
        assert reachable(web1, db.address, port) and reachable(worker, db.address, port)
    listening = on(db, "ss -ltnH")
    assert f"{db.address}:5432" in listening and f"{db.address}:{REDIS_PORT}" in listening


def test_http_on_a_web_host_is_open_to_the_balancer_only(fleet):
    (_, web1, _, _, lb), _, _ = fleet
    with pytest.raises(OSError):
        socket.create_connection((web1.address, 80), timeout=3).close()
    assert reachable(lb, web1.address, 80)


def test_a_rolling_deploy_with_a_migration_fails_no_request(fleet):
    (db, web1, web2, worker, lb), settings, app = fleet
    version_two(app)
    with Load(lb.address, clients=20, max_seconds=240) as load:
        time.sleep(0.5)
        proc = fab(*settings, "deploy")
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures({V1, V2}) == {}
    assert load.results[(200, V2)] > 0 and load.total > 100
    out = proc.stdout
    assert out.count("ran `flask db upgrade`") == 1
    backup = out.split(", backed up the database to ")[1].split(f" on {db.name}")[0]
    assert backup in on(db, "ls /srv/hello-world/backups")  # taken before the migration
    for web in (web1, web2):
        took = out.index(f"[{lb.name}] balancer    changed  took {web.name} out")
        assert took < out.index(f"[{web.name}] app ") < \
            out.index(f"[{lb.name}] balancer    changed  put {web.name} back")
    assert out.index(f"put {web1.name} back") < out.index(f"took {web2.name} out")
    assert f"took {worker.name} out" not in out
    assert [http_get(lb)[2] for _ in range(4)] == [V2] * 4
    assert "down" not in on(lb, "grep 'server ' /etc/nginx/sites-available/hello-world")
    source = [on(h, "readlink /srv/hello-world/current").strip().rpartition("-")[2]
              for h in (web1, worker)]
    assert source[0] == source[1]  # the same source (release ids are stamped by each host)
    history = json.loads(fab(*settings, "history", "--json", check=True).stdout)
    assert {e["host"] for e in history if e["action"] == "deploy"} == \
        {h.name for h in (db, web1, web2, worker, lb)}


def test_a_rollback_takes_every_app_host_back_and_leaves_the_data(fleet):
    (db, web1, web2, worker, lb), settings, _ = fleet
    proc = fab(*settings, "rollback", check=True)  # no -H: every host; db and lb have none
    for host in (web1, web2, worker):
        assert f"[{host.name}] rollback    changed" in proc.stdout
    assert f"[{db.name}] rollback" not in proc.stdout and f"[{lb.name}] rollback" not in proc.stdout
    assert [http_get(lb)[2] for _ in range(4)] == [V1] * 4  # the post is still there


def test_the_balancer_keeps_answering_when_a_web_host_dies(fleet):
    (_, _, web2, _, lb), _, _ = fleet
    with Load(lb.address, clients=20, max_seconds=60) as load:
        time.sleep(1)
        lost = time.monotonic()
        destroy(web2)
        time.sleep(8)
    assert load.failures({V1}) == {}, [(round(a - lost, 1), round(b - lost, 1), e)
                                       for a, b, e in load.errors]
    assert load.total > 100 and http_get(lb)[2] == V1


def test_a_worker_release_whose_process_dies_is_rolled_back(fleet):
    (_, _, _, worker, _), settings, app = fleet
    before = on(worker, "readlink /srv/hello-world/current").strip()
    worker_py = app / "worker.py"
    worker_py.write_text('raise SystemExit("the worker is broken")\n' + worker_py.read_text())
    proc = fab(*settings, "-H", worker.name, "deploy")
    assert proc.returncode == 1
    assert "hello-world-worker not running" in proc.stdout and "rolled back" in proc.stdout
    assert "the worker is broken" in proc.stdout  # its log, in the error
    assert on(worker, "readlink /srv/hello-world/current").strip() == before
    assert on(worker, "supervisorctl status").split()[:2] == ["hello-world-worker", "RUNNING"]

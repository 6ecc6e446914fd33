"""The tutorial-shaped app on a real PostgreSQL, MariaDB (`mysql`) and SQLite, with Redis:
the database made on the server, rows written through HTTP that survive deploys, a
rollback, a killed database server and a reboot; backups restored; a failing migration
that changes nothing; the database's port closed; its password in no output.

One server per engine; its tests run in order. PostgreSQL runs in `make test` (but for
the killed server and the reboot), MariaDB and SQLite in `make test-slow`.
"""

import json
import shutil
import socket
import subprocess
import time

import pytest

import sandbox
from tests.conftest import FAB, booted, fab, http_get, on, recap
from tests.integration.test_tutorial_app import APPS, page_when, version_two
from tests.load import Load

ENGINES = [pytest.param("postgresql", id="postgresql"),
           pytest.param("mysql", id="mysql", marks=pytest.mark.slow),
           pytest.param("sqlite", id="sqlite", marks=pytest.mark.slow)]
PORTS = {"postgresql": 5432, "mysql": 3306}
KILL = {"postgresql": "pkill -9 -o -x postgres", "mysql": "pkill -9 -x mariadbd"}


@pytest.fixture(scope="module", params=ENGINES)
def site(request, tmp_path_factory):
    """(server, app folder, env for fab, engine): the microblog app deployed on ENGINE."""
    engine = request.param
    app = tmp_path_factory.mktemp(engine) / "microblog"
    shutil.copytree(APPS / "microblog", app)
    (app / "prod.env").write_text("SECRET_KEY=not-a-real-secret\nFLASK_APP=microblog.py\n")
    env = {"FABRIC_APP_DATABASE": engine, "FABRIC_APP_REDIS": "1" if engine != "sqlite" else "0"}
    with booted() as server:
        first = run(server, app, env, "deploy")
        assert first.returncode == 0, first.stdout + first.stderr
        yield server, app, env, engine, [first]


def run(server, app, env, *args, **kwargs):
    return fab("-f", str(app / "deploy.yaml"), "-H", server.name, *args, env=env, **kwargs)


def sql(server, app, env, query):
    """QUERY through `fab db.shell` (as the app's role), its output."""
    argv = [FAB, "-S", str(sandbox.STATE / "ssh_config"), "-f", str(app / "deploy.yaml"),
            "-H", server.name, "db.shell"]
    proc = subprocess.run(argv, input=query + "\n", capture_output=True, text=True,
                          timeout=60, env={**__import__("os").environ, **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def count(server, app, env):
    out = sql(server, app, env, "SELECT count(*) FROM post;")
    return int(next(word for word in out.replace("|", " ").split() if word.isdigit()))


def passwords_on(server):
    """The passwords in the app's database.env (the database's and Redis's)."""
    out = []
    for line in on(server, "cat /etc/hello-world/database.env").splitlines():
        url = line.split("=", 1)[1]
        if "password=" in url:  # the app's Redis, on its socket
            out.append(url.rsplit("password=", 1)[1])
        elif "@" in url:
            out.append(url.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1])
    return out


def test_the_database_is_made_on_the_server_and_the_app_writes_rows_in_it(site):
    s, app, env, engine, outputs = site
    first = outputs[0].stdout
    assert "database    changed  set up the " in first and "ran `flask db upgrade`" in first
    assert http_get(s, "/add/hello")[2] == "added"
    assert page_when(s, "v1 COMPILED BANNER posts=1 done=1") == \
        "v1 COMPILED BANNER posts=1 done=1"
    assert count(s, app, env) == 1
    assert on(s, "stat -c '%U:%G %a' /etc/hello-world/database.env").strip() == \
        "root:hello-world 640"
    if engine != "sqlite":
        listening = on(s, f"ss -Hltn 'sport = :{PORTS[engine]}' | awk '{{print $4}}'").split()
        assert listening and all(a.startswith(("127.0.0.1:", "[::1]:")) for a in listening)
        with pytest.raises(OSError):
            socket.create_connection((s.address, PORTS[engine]), timeout=3).close()
        # the app's own Redis has a socket and no TCP port; Debian's shared instance is off
        assert on(s, "ss -Hltn | grep -c ':6379 ' || true").strip() == "0"
        assert on(s, "stat -c %F /run/redis-fab-hello-world/redis-server.sock").strip() == \
            "socket"
    again = run(s, app, env, "deploy")
    outputs.append(again)
    assert recap(again, s.name) == "ok=7 changed=0 failed=0"
    status = json.loads(run(s, app, env, "status", "--json", check=True).stdout)[0]
    assert status["database"]["engine"] == engine and status["healthy"]
    assert (status["redis"]["up"] if engine != "sqlite" else status["redis"] == {})


def test_rows_survive_a_migration_and_a_rollback(site):
    s, app, env, engine, outputs = site
    version_two(app)
    two = run(s, app, env, "deploy")
    outputs.append(two)
    assert two.returncode == 0, two.stdout
    assert ", backed up the database to " in two.stdout
    backup = two.stdout.split(", backed up the database to ")[1].split(",")[0]
    assert backup in on(s, "ls /srv/hello-world/backups")
    assert on(s, "stat -c '%U %a' /srv/hello-world/backups").strip() == "root 700"
    assert page_when(s, "v2 COMPILED BANNER posts=1 done=1 authors=anonymous").endswith(
        "authors=anonymous")
    back = run(s, app, env, "rollback")
    outputs.append(back)
    assert back.returncode == 0 and count(s, app, env) == 1
    assert run(s, app, env, "deploy").returncode == 0  # forward again
    assert count(s, app, env) == 1


@pytest.mark.slow
def test_rows_survive_a_killed_database_server_and_a_reboot(site):
    s, app, env, engine, outputs = site
    http_get(s, "/add/before-the-faults")
    rows = count(s, app, env)
    if engine in KILL:
        process = KILL[engine].split()[-1]
        before = on(s, f"pgrep -o -x {process}").strip()
        on(s, KILL[engine])
        sandbox.wait_for(lambda: on(s, f"pgrep -o -x {process} || true").strip()
                         not in ("", before), 60, "systemd to bring the database back")
        wait_healthy(s, app, env)
        assert count(s, app, env) == rows
    sandbox.reboot_server(s.name)
    wait_healthy(s, app, env)
    assert count(s, app, env) == rows
    http_get(s, "/add/after-reboot")
    assert count(s, app, env) == rows + 1


def wait_healthy(s, app, env, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if run(s, app, env, "status").returncode == 0:
            return
        time.sleep(2)
    raise AssertionError(run(s, app, env, "status").stdout)


def test_a_backup_restored_gives_back_the_same_rows(site):
    s, app, env, engine, outputs = site
    taken = run(s, app, env, "db.backup")
    outputs.append(taken)
    assert taken.returncode == 0, taken.stdout
    name = taken.stdout.split("/srv/hello-world/backups/")[1].split()[0]
    rows = count(s, app, env)
    http_get(s, "/add/after-the-backup")
    assert count(s, app, env) == rows + 1
    bare = run(s, app, env, "db.restore")
    assert bare.returncode == 1 and "db.restore needs --from NAME; the backups here" in \
        bare.stdout and name in bare.stdout
    missing = run(s, app, env, "db.restore", "--from", "20200101T000000Z-none.pgdump")
    assert missing.returncode == 1 and "no backup '20200101T000000Z-none.pgdump'" in \
        missing.stdout and "Traceback" not in missing.stderr
    assert count(s, app, env) == rows + 1  # nothing changed
    with Load(s.address, clients=20, max_seconds=120) as load:
        restored = run(s, app, env, "db.restore", "--from", name)
    outputs.append(restored)
    assert restored.returncode == 0, restored.stdout
    statuses = {status for status, _ in load.results}  # visitors meet the maintenance page
    assert statuses == {200, 503}, load.results  # never a 502
    assert "hello-world.on" not in on(s, "ls /etc/nginx/fab-maintenance/")  # and it is off
    assert f"restored {name} over the " in restored.stdout
    assert "the data it replaced is backed up as" in restored.stdout
    wait_healthy(s, app, env)
    assert count(s, app, env) == rows


def test_a_failing_migration_leaves_the_old_release_serving_and_the_data(site):
    s, app, env, engine, outputs = site
    live = on(s, "readlink /srv/hello-world/current").strip()
    rows = count(s, app, env)
    (app / "migrations/versions/0003_broken.py").write_text(
        '"""broken"""\nrevision = "0003"\ndown_revision = "0002"\n\n\n'
        "def upgrade():\n    raise RuntimeError('this migration fails')\n")
    try:
        failed = run(s, app, env, "deploy")
        outputs.append(failed)
        assert failed.returncode == 1
        assert "nothing was switched; the data before it is backed up: fab db.restore " \
               "--from " in failed.stdout
        assert "this migration fails" in failed.stdout
        assert on(s, "readlink /srv/hello-world/current").strip() == live
        assert count(s, app, env) == rows
    finally:
        (app / "migrations/versions/0003_broken.py").unlink()


def test_the_passwords_appear_in_no_output_log_or_command_line(site):
    s, app, env, engine, outputs = site
    passwords = passwords_on(s)
    assert len(passwords) == (0 if engine == "sqlite" else 2)  # the database's and Redis's
    logs = on(s, "journalctl --no-pager -o cat 2>/dev/null; cat /var/log/postgresql/*.log "
                 "/var/log/redis/*.log /var/log/hello-world/* /var/log/supervisor/* "
                 "2>/dev/null; ps -eo args", check=False)
    for password in passwords:
        assert len(password) == 48
        for proc in outputs:
            assert password not in proc.stdout + proc.stderr
        assert password not in logs


def test_status_and_logs_show_the_database_and_redis_and_a_run_starts_them_again(site):
    s, app, env, engine, outputs = site
    if engine == "sqlite":
        assert "sqlite" in run(s, app, env, "status").stdout
        return
    ready = {"postgresql": "database system is ready to accept connections",
             "mysql": "ready for connections"}[engine]
    assert ready in run(s, app, env, "logs", "-c", "database", "-n", "200").stdout
    assert "Ready to accept connections" in run(s, app, env, "logs", "-c", "redis").stdout
    on(s, "systemctl stop 'redis-server@*' postgresql mariadb 2>/dev/null; true")
    down = run(s, app, env, "status")
    assert down.returncode == 1
    assert f"the {engine} database hello_world does not answer" in down.stdout
    assert "redis does not answer" in down.stdout
    again = run(s, app, env, "provision")
    outputs.append(again)
    assert again.returncode == 0 and "database    changed  started " in again.stdout
    wait_healthy(s, app, env)

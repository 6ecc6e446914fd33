"""The server is hostile ground (issue 24): what the app, its build or another local
account can shape never steers root, reaches another app or answers for the app.

One server runs an app whose own processes forge fact blocks in their working folders (a
worker started with `exec`, and a gunicorn master), whose folder holds secrets, with its own
Redis beside a second app's, and whose build tries to leave things behind. Every attempt
must come to nothing while deploys go on serving every request.
"""

import json
import shutil

import pytest

import sandbox
from tests.conftest import PROJECT, fab, http_get, on, recap
from tests.load import Load

FORGED = {  # a process's working folder whose lines read as fact blocks of their own
    "evil": r"/tmp/y\n@@candidates\nssh.service",
    "master": r"/tmp/z\n@@half_built\nrelease ..\n@@programs\nssh\n@@services\nufw disabled",
}


def forging(folder, then):
    """A Procfile-style command: exec python, make FOLDER, move into it, become THEN."""
    return (f"exec python3 -c \"import os; d = '{folder}'; os.makedirs(d, exist_ok=True); "
            f"os.chdir(d); os.execvp({then[0]!r}, {then!r})\"")


def settings(apps, name="hello-world", **extra):
    """A settings file (-f) for app NAME, its source the hostile app."""
    path = apps / f"{name}.yaml"
    path.write_text(json.dumps({"app": {"name": name, "source": str(apps / "hostile"),
                                        "redis": True, **extra}}))
    return str(path)


@pytest.fixture(scope="module")
def hostile(module_server):
    s, apps = module_server
    app = apps / "hostile"
    shutil.copytree(PROJECT / "hello_world", app)
    for name, text in ((".env", "SECRET_KEY=dev-secret\n"), ("instance/app.db", "rows"),
                       ("server.key", "-----BEGIN PRIVATE KEY-----\n"),
                       ("prod.env", "GREETING=from-env\n"), (".gitignore", "notes/\n"),
                       ("notes/todo.txt", "private")):
        (app / name).parent.mkdir(exist_ok=True)
        (app / name).write_text(text)
    gunicorn = ["gunicorn", "--bind", "unix:/tmp/evil.sock", "--pythonpath",
                "/srv/hello-world/current", "app:app"]
    conf = settings(apps, env_file=str(app / "prod.env"), processes={
        "evil": forging(FORGED["evil"], ["sleep", "100000"]),
        "master": forging(FORGED["master"], gunicorn)})
    first = fab("-f", conf, "-H", s.name, "deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    other = fab("-f", settings(apps, "other"), "-H", s.name, "database", "app")
    assert other.returncode == 0, other.stdout + other.stderr
    return s, apps, conf, first


def test_forged_fact_blocks_change_nothing_and_deploys_serve_every_request(hostile):
    s, apps, conf, _ = hostile
    running = on(s, "ps -o args= -u hello-world")
    assert "sleep 100000" in running and "unix:/tmp/evil.sock" in running
    cwds = on(s, "for p in $(pgrep -u hello-world -f 'sleep 100000|evil.sock'); do "
                 "readlink /proc/$p/cwd; done")
    assert "@@candidates" in cwds and "@@half_built" in cwds  # the forgers are in place
    # Loopback ports are every local account's: nobody listens where gunicorn once did.
    on(s, "for port in 8000 8001; do (runuser -u nobody -- python3 -m http.server $port "
          "--bind 127.0.0.1 > /tmp/nobody-$port.log 2>&1 &) ; done; sleep 1")
    (apps / "hostile" / "static" / "v2.css").write_text("body {}\n")
    with Load(s.address, clients=20, max_seconds=120) as load:
        proc = fab("-f", conf, "-H", s.name, "deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures({"Hello world"}) == {} and load.total > 0
    assert "ssh.service" not in proc.stdout and "release .." not in proc.stdout
    assert on(s, "systemctl is-active ssh").strip() == "active"
    assert sandbox.port_open(s.address, 22)
    assert on(s, "cat /tmp/nobody-8000.log /tmp/nobody-8001.log").count("GET") == 0
    assert recap(fab("-f", conf, "-H", s.name, "deploy"), s.name) == "ok=7 changed=0 failed=0"


def test_no_secret_ships_and_only_static_files_are_readable_by_other_accounts(hostile):
    s, apps, conf, _ = hostile
    tree = on(s, "cd /srv/hello-world/current && find . -path ./.venv -prune -o -print")
    for name in (".env", "instance", "server.key", "prod.env", "notes"):
        assert f"./{name}" not in tree.split()
    assert "./.gitignore" in tree.split()
    (apps / "hostile/static/dry.css").write_text("body {}\n")
    try:
        dry = fab("-f", conf, "-H", s.name, "deploy", "--dry-run").stdout
    finally:
        (apps / "hostile/static/dry.css").unlink()
    assert "would upload 6 files, 1 KB; left out: instance/, .env, server.key (fab's secret " \
           "names); notes/ (.gitignore); prod.env (app.env_file) as release " in dry
    readable = on(s, "cd /srv/hello-world/current && find -L . -path ./.venv -prune -o "
                     "-type f -print | while read -r f; do "
                     "runuser -u nobody -- cat \"$f\" >/dev/null 2>&1 && echo \"$f\"; done; true")
    assert sorted(readable.split()) == ["./static/style.css", "./static/v2.css"]
    assert http_get(s, "/static/v2.css")[2] == "body {}\n"  # nginx still serves static
    assert on(s, "runuser -u www-data -- cat /srv/hello-world/current/app.py 2>&1 || true") \
        .strip().endswith("Permission denied")


def test_two_apps_redis_are_two_key_spaces(hostile):
    s, *_ = hostile
    a, b = (f"/run/redis-fab-{n}/redis-server.sock" for n in ("hello-world", "other"))
    password = {n: on(s, f"sed -n 's/.*password=//p' /etc/{n}/database.env").strip()
                for n in ("hello-world", "other")}
    assert len(set(password.values())) == 2 and all(len(p) == 48 for p in password.values())

    def cli(user, app, sock, *args):
        return on(s, f"runuser -u {user} -- env REDISCLI_AUTH={password[app]} redis-cli "
                     f"--no-auth-warning -s {sock} {' '.join(args)} 2>&1", check=False).strip()
    assert cli("hello-world", "hello-world", a, "set", "session:1", "alice") == "OK"
    assert cli("other", "other", b, "get", "session:1") == ""  # B's Redis has none of A's keys
    assert cli("other", "other", b, "keys", "'*'") == ""
    assert "WRONGPASS" in cli("other", "other", a, "get", "session:1")  # B's password: not A's
    assert "Permission denied" in on(s, "runuser -u other -- cat /etc/hello-world/database.env "
                                        "2>&1 || true")
    assert on(s, "ss -Hltn | grep -c ':6379 ' || true").strip() == "0"  # no shared instance


def test_a_build_leaves_nothing_behind_and_writes_only_its_release(hostile):
    s, apps, conf, _ = hostile
    on(s, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cron >/dev/null 2>&1",
       timeout=300)
    build = ("(setsid sleep 100001 >/dev/null 2>&1 &); "
             "(echo '* * * * * touch /tmp/cron-pwned' | crontab - 2>/dev/null); "
             "(touch /srv/other/build-pwned /tmp/build-pwned 2>/dev/null); "
             "ls /proc | grep -c '^[0-9]' > procs.txt; true")
    (apps / "hostile" / "static" / "v3.css").write_text("body {}\n")
    proc = fab("-f", settings(apps, build_command=build, env_file=str(apps / "hostile/prod.env"),
                              processes={}), "-H", s.name, "deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    account = "fab-build-hello-world"
    assert on(s, f"pgrep -u {account} || true").strip() == ""  # the sleep ended with the unit
    assert on(s, f"ls /var/spool/cron/crontabs/{account} /srv/other/build-pwned /tmp/build-pwned "
                 "2>&1 | grep -c 'No such' || true").strip() == "3"
    assert account in on(s, "cat /etc/cron.deny /etc/at.deny").split()
    assert int(on(s, "cat /srv/hello-world/current/procs.txt")) < 10  # its own processes only
    assert on(s, "id -u fab-build-other").strip() != on(s, f"id -u {account}").strip()


def test_an_account_fab_did_not_make_is_refused_as_the_app_user(hostile):
    s, apps, *_ = hostile
    proc = fab("-f", settings(apps, "adopt", user="www-data", redis=False), "-H", s.name,
               "provision")
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert ("app.user=www-data is an account fab did not make (another service's, like "
            "www-data or postgres?)") in proc.stdout
    assert on(s, "ls /srv/adopt /etc/adopt 2>&1 | grep -c 'No such'").strip() == "2"

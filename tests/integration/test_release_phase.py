"""A build step and a release phase, as a tutorial-shaped app needs them.

The build (like `flask translate compile`) writes into each new release before it is
sealed; the release command (like `flask db upgrade`) migrates the live data once per
deploy, in the new release, with the app's environment, before any traffic moves.
"""

import json
import os
import shlex
import subprocess
import time

import pytest

import sandbox
from tests.conftest import FAB, PROJECT, fab, http_get, on, recap
from tests.load import Load

# make test keeps the release phase through the tutorial app and a failing migration on
# PostgreSQL (test_tutorial_app.py, test_databases.py)
pytestmark = pytest.mark.slow

APP = '''\
import os
import sqlite3

from flask import Flask

app = Flask(__name__)
VERSION = "{version}"


@app.route("/")
def index():
    with open("compiled.txt") as f:
        compiled = f.read().strip()
    schema = sqlite3.connect("app.db").execute("select max(number) from migrations").fetchone()
    return f"{{VERSION}} {{compiled}} schema={{schema[0]}}"
'''
BUILD = '''\
import os
with open("compiled.txt", "w") as f:
    f.write("compiled-" + os.environ["GREETING"])
os.makedirs("logs", exist_ok=True)
with open("logs/build.log", "a") as f:  # a build writes logs too: they go to a scratch folder
    f.write("built\\n")
'''
MIGRATE = '''\
import os
import sqlite3
import sys
import time

MIGRATIONS = {migrations}
con = sqlite3.connect("app.db")
con.execute("create table if not exists migrations (number, greeting)")
done = con.execute("select count(*) from migrations").fetchone()[0]
for number in range(done + 1, MIGRATIONS + 1):
    con.execute("insert into migrations values (?, ?)", (number, os.environ["GREETING"]))
{extra}
con.commit()
print("migrated to", MIGRATIONS)
'''
# ${PWD} is the shell's: systemd, which runs the build, must not expand it first
ENV = {"FABRIC_APP_SHARED_PATHS": "app.db logs/",
       "FABRIC_APP_BUILD_COMMAND": 'test -n "${PWD}" && python build.py',
       "FABRIC_APP_RELEASE_COMMAND": "python migrate.py"}


def make(apps, version, migrations=1, extra=""):
    path = apps / version
    path.mkdir()
    (path / "app.py").write_text(APP.format(version=version))
    (path / "build.py").write_text(BUILD)
    (path / "migrate.py").write_text(MIGRATE.format(migrations=migrations, extra=extra))
    (path / "requirements.txt").write_text("flask==3.1.3\n")
    return path


@pytest.fixture(scope="module")
def site(module_server):
    s, apps = module_server
    env_file = apps / "prod.env"
    env_file.write_text("GREETING=hi\n")
    return s, apps, {**ENV, "FABRIC_APP_ENV_FILE": str(env_file)}


def deploy(s, app, env, **more):
    return fab("-H", s.name, "deploy", env={**env, "FABRIC_APP_SOURCE": str(app), **more})


def test_a_fresh_server_builds_migrates_then_serves(site):
    s, apps, env = site
    proc = deploy(s, make(apps, "v1"), env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ran `python migrate.py`" in proc.stdout
    assert http_get(s)[2] == "v1 compiled-hi schema=1"
    assert on(s, "stat -c '%U:%G %a' /srv/hello-world/current/compiled.txt").strip() == \
        "root:hello-world 640"
    assert on(s, "ls /srv/hello-world/shared/logs").strip() == ""  # the build's log was scratch
    assert on(s, "ls /srv/hello-world/build 2>&1 || true").startswith("ls: cannot access")


def test_a_migration_applies_under_load_with_no_failed_request(site):
    s, apps, env = site
    with Load(s.address, clients=10, max_seconds=120) as load:
        proc = deploy(s, make(apps, "v2", migrations=2), env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures({"v1 compiled-hi schema=1", "v1 compiled-hi schema=2",
                          "v2 compiled-hi schema=2"}) == {}
    assert http_get(s)[2] == "v2 compiled-hi schema=2"


@pytest.mark.parametrize("case", ["fails", "hangs", "build fails"])
def test_a_failing_release_or_build_leaves_the_live_release_serving(site, case):
    s, apps, env = site
    before = on(s, "ls /srv/hello-world/releases")
    if case == "fails":
        app = make(apps, "v3", migrations=3, extra="raise SystemExit('no such column: bad')")
        proc = deploy(s, app, env)
        assert "the release command `python migrate.py` failed (exit 1)" in proc.stdout
        assert "no such column: bad" in proc.stdout
    elif case == "hangs":
        app = make(apps, "v4", extra="time.sleep(600)")
        proc = deploy(s, app, env, FABRIC_APP_RELEASE_TIMEOUT="10")
        assert "the release command timed out after 10 s (app.release_timeout)" in proc.stdout
    else:
        app = make(apps, "v5")
        (app / "build.py").write_text("raise SystemExit('cannot compile the translations')\n")
        proc = deploy(s, app, env)
        assert "cannot compile the translations" in proc.stdout
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert http_get(s)[2] == "v2 compiled-hi schema=2"  # serving, and the data as it was
    assert on(s, "ls /srv/hello-world/releases") == before  # the failed release is gone


def test_a_rollback_says_it_does_not_run_the_release_command(site):
    s, _, env = site
    proc = fab("-H", s.name, "rollback", env=env)
    assert recap(proc, s.name) == "ok=0 changed=1 failed=0"
    assert "(`python migrate.py` is not run back: the data stays as the newer release left it)" \
        in proc.stdout
    assert http_get(s)[2] == "v1 compiled-hi schema=2"  # the data stays as v2 left it


WORKER = '''\
import os
import time

from app import VERSION

while True:  # real work, as a queue worker would do it: in the shared state, with the env
    with open("logs/worker.txt.new", "w") as f:
        f.write(f"{VERSION} {os.environ['GREETING']}")
    os.replace("logs/worker.txt.new", "logs/worker.txt")
    print("worked", VERSION, flush=True)
    time.sleep(0.5)
'''


def worker_says(s, text, seconds=30):
    """Wait (bounded) until the worker's file says TEXT; return what it says last."""
    deadline, said = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        said = on(s, "cat /srv/hello-world/shared/logs/worker.txt 2>/dev/null || true").strip()
        if said == text:
            break
        time.sleep(0.5)
    return said


def test_an_extra_process_runs_the_live_release_and_follows_switches(site, tmp_path):
    s, apps, env = site
    settings = tmp_path / "worker.yaml"
    settings.write_text("app:\n  processes:\n    worker: python worker.py\n")
    for version in ("v6", "v7"):
        app = make(apps, version, migrations=2)
        (app / "worker.py").write_text(WORKER)
        proc = fab("-f", str(settings), "-H", s.name, "deploy",
                   env={**env, "FABRIC_APP_SOURCE": str(app)})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert worker_says(s, f"{version} hi") == f"{version} hi"
        status = json.loads(fab("-f", str(settings), "-H", s.name, "status", "--json",
                                env=env, check=True).stdout)[0]
        assert status["processes"]["worker"]["state"] == "RUNNING"
        pid = status["processes"]["worker"]["pid"]
        assert on(s, f"ps -o user= -p {pid}").strip() == "hello-world"
    logs = fab("-f", str(settings), "-H", s.name, "logs", "-c", "worker", env=env, check=True)
    assert "worked v7" in logs.stdout
    assert fab("-f", str(settings), "-H", s.name, "rollback", env=env).returncode == 0
    assert worker_says(s, "v6 hi") == "v6 hi"


def test_exec_runs_a_command_in_the_live_release_as_the_app_and_returns_its_exit_code(site):
    s, _, env = site
    proc = fab("-H", s.name, "exec", "--", "id -un; echo $GREETING; ls app.db; exit 3", env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"[{s.name}] hello-world", f"[{s.name}] hi",
                                        f"[{s.name}] app.db"]
    assert fab("-H", s.name, "exec", "--", "python -c 'import flask'", env=env).returncode == 0
    shell = fab("-H", s.name, "exec", "--", 'echo "${PWD}" $$', env=env).stdout.split()
    assert shell[1].startswith("/srv/hello-world/releases/") and shell[2].isdigit()
    # on a terminal (script(1) gives fab one), the command gets a terminal of its own
    argv = " ".join(shlex.quote(a) for a in [FAB, "-S", str(sandbox.STATE / "ssh_config"),
                                              "-H", s.name, "exec", "--", "tty"])
    tty = subprocess.run(["script", "-qec", argv, "/dev/null"], cwd=PROJECT, text=True,
                         capture_output=True, timeout=120, env={**os.environ, **env})
    assert tty.returncode == 0 and "/dev/pts/" in tty.stdout, tty.stdout + tty.stderr
    missing = fab("-H", s.name, "exec", env=env)
    assert missing.returncode == 2 and "give the command after --" in missing.stderr

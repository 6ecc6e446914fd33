"""State the app writes next to its code (a `logs/` folder, a SQLite file) lives in
<dir>/shared and survives deploys, rollbacks, pruning and a reboot; root never follows a
link the app leaves there."""

import time

import pytest

import sandbox
from tests.conftest import fab, http_get, on

# make test keeps shared state through the tutorial app (tests/integration/test_tutorial_app.py)
pytestmark = pytest.mark.slow

NOTES = '''\
import os
import sqlite3

from flask import Flask

app = Flask(__name__)
os.makedirs("logs", exist_ok=True)  # as the tutorial's app does, in its working directory
VERSION = "{version}"


def db():
    con = sqlite3.connect("app.db")
    con.execute("create table if not exists notes (text)")
    return con


@app.route("/add/<text>")
def add(text):
    with db() as con:
        con.execute("insert into notes values (?)", (text,))
    with open("logs/notes.log", "a") as log:
        log.write(f"added {{text}}\\n")
    return "added"


@app.route("/")
def index():
    return VERSION + " " + ",".join(row[0] for row in db().execute("select text from notes"))
'''
ENV = {"FABRIC_APP_SHARED_PATHS": "logs/ app.db", "FABRIC_APP_KEEP_RELEASES": "2"}


def notes_app(apps, version, extra=None):
    path = apps / version
    path.mkdir()
    (path / "app.py").write_text(NOTES.format(version=version))
    (path / "requirements.txt").write_text("flask==3.1.3\ngunicorn==23.0.0\n")
    for name, text in (extra or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


@pytest.fixture(scope="module")
def notes(module_server):
    return module_server


def deploy(s, app, *args):
    proc = fab("-H", s.name, "deploy", *args, env={**ENV, "FABRIC_APP_SOURCE": str(app)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def page(s):
    return http_get(s)[2]


def test_state_survives_deploys_rollbacks_and_pruning(notes):
    s, apps = notes
    deploy(s, notes_app(apps, "v1"))
    assert http_get(s, "/add/first")[2] == "added" and page(s) == "v1 first"
    deploy(s, notes_app(apps, "v2"))
    assert page(s) == "v2 first"
    assert fab("-H", s.name, "rollback", env=ENV).returncode == 0
    assert page(s) == "v1 first"
    http_get(s, "/add/second")
    for version in ("v3", "v4"):
        deploy(s, notes_app(apps, version))
    assert page(s) == "v4 first,second"
    assert len(on(s, "ls /srv/hello-world/releases").split()) == 2  # pruned to keep_releases
    assert on(s, "stat -c '%U:%G %a' /srv/hello-world/shared /srv/hello-world/shared/app.db")\
        .split() == ["hello-world:hello-world", "750", "hello-world:hello-world", "644"]
    assert on(s, "cat /srv/hello-world/shared/logs/notes.log").split("\n")[:2] == \
        ["added first", "added second"]
    assert on(s, "readlink /srv/hello-world/current/app.db").strip() == \
        "/srv/hello-world/shared/app.db"


def test_state_survives_a_reboot(notes):
    s, _ = notes
    sandbox.reboot_server(s.name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded: the app may need a moment after boot
        try:
            if page(s) == "v4 first,second":
                break
        except OSError:
            pass
        time.sleep(0.5)
    assert page(s) == "v4 first,second"


def test_a_release_with_its_own_copy_of_a_shared_path_is_told_the_shared_one_wins(notes):
    s, apps = notes
    proc = deploy(s, notes_app(apps, "v5", {"logs/notes.log": "from the repository\n"}))
    assert "(the shared logs replaced the release's own)" in proc.stdout
    assert "from the repository" not in on(s, "cat /srv/hello-world/shared/logs/notes.log")
    assert page(s) == "v5 first,second"


def test_root_never_follows_a_link_the_app_leaves_in_its_state(notes):
    s, apps = notes
    on(s, "install -d /srv/victim && touch /srv/victim/a")
    on(s, "runuser -u hello-world -- sh -c 'cd /srv/hello-world/shared && mv logs logs.old && "
          "ln -s /srv/victim logs'")
    deploy(s, notes_app(apps, "v6"))
    assert on(s, "ls -A /srv/victim").split() == ["a"]
    assert on(s, "stat -c %U /srv/victim").strip() == "root"
    assert page(s) == "v6 first,second"

"""The tutorial-shaped app (tests/apps/microblog) into production with settings only.

An app factory in a package, static files inside it, SQLAlchemy with Flask-Migrate and two
migrations, a `flask` command run by the build step that writes into the release, a `logs/`
folder in its working directory, SQLite in shared state, a worker process doing real work,
and no gunicorn in its requirements. Its settings live in its own folder (deploy.yaml).
"""

import json
import shutil
import time

import pytest

from tests.conftest import PROJECT, fab, http_get, on, recap
from tests.load import Load

APPS = PROJECT / "tests/apps"
def version_two(app):
    """The second version: a migration adding authors, and code that shows them."""
    shutil.copy(APPS / "0002_authors.py", app / "migrations/versions/0002_authors.py")
    models = app / "app/models.py"
    models.write_text(models.read_text() + '    author = sa.Column(sa.String(64), nullable=False, '
                      'server_default="anonymous")\n')
    routes = app / "app/routes.py"
    routes.write_text(routes.read_text().replace('VERSION = "v1"', 'VERSION = "v2"').replace(
        'return f"{VERSION} {banner} posts={len(posts)} done={done}"',
        'authors = ",".join(sorted({post.author for post in posts}))\n'
        '    return f"{VERSION} {banner} posts={len(posts)} done={done} authors={authors}"'))


@pytest.fixture(scope="module")
def microblog(module_server):
    s, apps = module_server
    app = apps / "microblog"
    shutil.copytree(APPS / "microblog", app)
    (app / "prod.env").write_text("SECRET_KEY=not-a-real-secret\nFLASK_APP=microblog.py\n")
    return s, app


def run(s, app, *args, **kwargs):
    return fab("-f", str(app / "deploy.yaml"), "-H", s.name, *args, **kwargs)


def page_when(s, text, seconds=30):
    """The page once it says TEXT (bounded wait: the worker works every half second)."""
    deadline, page = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        page = http_get(s)[2]
        if page == text:
            break
        time.sleep(0.5)
    return page


def test_first_deploy_builds_migrates_and_serves_with_its_worker(microblog):
    s, app = microblog
    proc = run(s, app, "deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ran `flask db upgrade`" in proc.stdout
    assert http_get(s, "/add/hello")[2] == "added"
    assert page_when(s, "v1 COMPILED BANNER posts=1 done=1") == \
        "v1 COMPILED BANNER posts=1 done=1"  # built into the release, done by the worker
    assert http_get(s, "/static/style.css")[0] == 200
    assert "microblog startup" in on(s, "cat /srv/hello-world/shared/logs/microblog.log")
    status = json.loads(run(s, app, "status", "--json", check=True).stdout)[0]
    assert status["processes"]["worker"]["state"] == "RUNNING"
    venv = "/srv/hello-world/current/.venv/bin/python"
    assert on(s, f"{venv} -c 'import gunicorn; print(gunicorn.__version__)'").strip() == "23.0.0"


def test_the_second_migration_applies_under_load_and_the_rows_survive(microblog):
    s, app = microblog
    version_two(app)
    with Load(s.address, clients=10, max_seconds=180) as load:
        proc = run(s, app, "deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures({"v1 COMPILED BANNER posts=1 done=1",
                          "v2 COMPILED BANNER posts=1 done=1 authors=anonymous"}) == {}
    assert http_get(s)[2] == "v2 COMPILED BANNER posts=1 done=1 authors=anonymous"
    http_get(s, "/add/again")
    two = "v2 COMPILED BANNER posts=2 done=2 authors=anonymous"
    assert page_when(s, two) == two
    current = run(s, app, "exec", "--", "flask db current")
    assert current.returncode == 0 and "0002 (head)" in current.stdout
    assert recap(run(s, app, "deploy"), s.name) == "ok=6 changed=0 failed=0"

"""A database host (app.roles.db) running MariaDB for the tutorial-shaped app: made and
opened to the web hosts only, a web host added later let in by the next run, backups and
the SQL shell on the database host (and a clear line on a web host, where it is not), and a
restore there showing every web host's visitors the maintenance page."""

import shutil
import socket

import pytest

from tests.conftest import boot, destroy, fab, http_get, on
from tests.integration.test_balancer import reachable
from tests.integration.test_databases import count
from tests.integration.test_tutorial_app import APPS
from tests.load import Load

pytestmark = pytest.mark.slow


def roles_file(app, db, webs):
    (app / "deploy.yaml").write_text(
        (APPS / "microblog/deploy.yaml").read_text()
        + f"  database: mysql\n  roles:\n    db: [{db.name}]\n"
        f"    web: [{', '.join(w.name for w in webs)}]\n")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    servers = []
    try:
        servers += [boot() for _ in range(3)]
        app = tmp_path_factory.mktemp("dbhost") / "microblog"
        shutil.copytree(APPS / "microblog", app)
        (app / "prod.env").write_text("SECRET_KEY=not-a-real-secret\nFLASK_APP=microblog.py\n")
        yield servers, app
    finally:
        for s in servers:
            destroy(s)


def test_mariadb_on_the_database_host_serves_the_web_host_and_no_one_else(hosts):
    (db, web1, web2), app = hosts
    roles_file(app, db, [web1])
    fab("-f", str(app / "deploy.yaml"), "provision", check=True)
    assert http_get(web1, "/add/first")[2] == "added"
    with pytest.raises(OSError):
        socket.create_connection((db.address, 3306), timeout=3).close()
    assert reachable(web1, db.address, 3306) and not reachable(web2, db.address, 3306)
    assert f"{db.address}:3306" in on(db, "ss -ltnH")


def test_a_web_host_added_later_is_let_in_by_the_next_run(hosts):
    (db, web1, web2), app = hosts
    roles_file(app, db, [web1, web2])
    alone = fab("-f", str(app / "deploy.yaml"), "-H", web2.name, "provision")
    assert alone.returncode == 1 and f"the database host {db.name} does not let {web2.name} " \
        f"({web2.address}) in yet: provision it first (fab -H {db.name} provision)" in alone.stdout
    both = fab("-f", str(app / "deploy.yaml"), "provision", check=True)
    assert f"[{db.name}] firewall    changed  allowed 3306/tcp from {web2.address}" in both.stdout
    assert http_get(web2)[2] == http_get(web1)[2] == "v1 COMPILED BANNER posts=1 done=1"


def test_backups_and_the_shell_run_on_the_database_host(hosts):
    (db, web1, _), app = hosts
    settings = ["-f", str(app / "deploy.yaml")]
    elsewhere = fab(*settings, "-H", web1.name, "db.backup")
    assert elsewhere.returncode == 1 and f"this host runs no database; it is on {db.name}: " \
        f"run this there (fab -H {db.name} ...)" in elsewhere.stdout
    taken = fab(*settings, "-H", db.name, "db.backup", check=True)
    name = taken.stdout.split("/srv/hello-world/backups/")[1].split()[0]
    assert name in on(db, "ls /srv/hello-world/backups")
    assert count(db, app, {}) == 1  # as the app's role, over 127.0.0.1 on the database host


def test_a_restore_on_the_database_host_shows_the_web_hosts_the_maintenance_page(hosts):
    (db, web1, web2), app = hosts
    name = sorted(on(db, "ls /srv/hello-world/backups").split())[-1]
    assert http_get(web1, "/add/after-the-backup")[2] == "added"
    assert count(db, app, {}) == 2
    with Load(web2.address, clients=10, max_seconds=120) as load:
        fab("-f", str(app / "deploy.yaml"), "-H", db.name, "db.restore", "--from", name,
            check=True)
    statuses = {status for status, _ in load.results}
    assert statuses == {200, 503}, load.results  # the page while the data changed, no 500
    for web in (web1, web2):  # and off again on every web host
        assert "hello-world.on" not in on(web, "ls /etc/nginx/fab-maintenance/", check=False)
    assert count(db, app, {}) == 1

"""Off-site backups on real servers: the tutorial-shaped app's database pushed to a backup
host (app.roles.backup) by `fab db.backup` and by its timer, shown in status, restored from
there, a failed push shown and mended by the next run; and (make test-slow) the disaster
drill: the app's server destroyed, a new one under its name, `provision` + `db.restore
--from` bring the data back; then the same with the backup host gone: a clear line, nothing
changed."""

import json
import os
import shutil

import pytest

import sandbox
from tests.conftest import booted, fab, http_get, on
from tests.integration.test_tutorial_app import APPS, page_when

APP = "hello-world"
UNIT = f"fab-backup:{APP}.service"


def site_files(folder, web, backup, database):
    app = folder / "microblog"
    shutil.copytree(APPS / "microblog", app)
    (app / "prod.env").write_text("SECRET_KEY=not-a-real-secret\nFLASK_APP=microblog.py\n")
    key = folder / "operator" / "backup.key"
    with (app / "deploy.yaml").open("a") as f:
        f.write(f"  database: {database}\n  roles: {{web: [{web.name}], backup: [{backup.name}]}}"
                f"\n  backup_key_file: {key}\n")
    return app, key


def run(app, *args, **kwargs):
    return fab("-f", str(app / "deploy.yaml"), *args, **kwargs)


def posts(web):
    return int(http_get(web)[2].split("posts=")[1].split()[0])


def status_of(app):
    return json.loads(run(app, "status", "--json").stdout)[0]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(web host, backup host, app folder, key file): SQLite, provisioned."""
    with booted() as web, booted() as backup:
        app, key = site_files(tmp_path_factory.mktemp("offsite"), web, backup, "sqlite")
        yield web, backup, app, key


def test_provision_sets_the_backup_host_up_and_db_backup_pushes_there(pair):
    web, backup, app, key = pair
    first = run(app, "provision", check=True)
    assert backup.name not in first.stdout.split("recap:")[1]  # no run converges it
    assert f"made the backups' key {key}: keep a copy of it safe" in first.stdout
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert on(web, f"stat -c '%U %a' /etc/{APP}/backup-key").split() == ["root", "600"]
    # the backup host holds the repository but no key that opens it
    assert on(backup, "ls -a /var/lib/fab-backups/hello-world/repo").split()[2:] == \
        ["config", "data", "index", "keys", "locks", "snapshots"]
    secret = key.read_text().strip()
    assert on(backup, f"grep -rlF -- {secret} /var/lib/fab-backups /etc /root || true") == ""
    # the web host's key there may run sftp-server and nothing else
    tried = on(web, f"ssh -F /etc/{APP}/backup-ssh.conf fab-backup id </dev/null", check=False)
    assert "uid=" not in tried
    assert http_get(web, "/add/hello")[2] == "added"
    pushed = run(app, "db.backup", check=True)
    assert f"and pushed it to {backup.name}" in pushed.stdout
    snapshots = on(web, f"/etc/{APP}/backup-restic snapshots --json")
    name = pushed.stdout.split(f"/srv/{APP}/backups/")[1].split()[0]
    assert json.loads(snapshots)[0]["paths"] == [f"/{name}"]


def test_the_timer_pushes_and_status_shows_the_newest_ones_age(pair):
    web, backup, app, _ = pair
    assert on(web, f"systemctl is-enabled {UNIT.replace('.service', '.timer')}").strip() == \
        "enabled"
    on(web, f"systemctl start {UNIT}")  # what the timer starts, now
    status = status_of(app)
    assert status["healthy"] and status["columns"]["off-site"]["text"].endswith("s ago")
    assert len(json.loads(on(web, f"/etc/{APP}/backup-restic snapshots --json"))) == 2


def test_a_backup_only_the_backup_host_has_is_fetched_and_restored(pair):
    web, backup, app, _ = pair
    on(web, f"rm -f /srv/{APP}/backups/*.gz")
    assert http_get(web, "/add/after")[2] == "added" and posts(web) == 2
    listed = run(app, "db.restore")
    assert listed.returncode == 1 and f"none yet (fab db.backup); on {backup.name}: " in \
        listed.stdout
    newest = listed.stdout.split(f"on {backup.name}: ")[1].split(",")[0].split()[0]
    restored = run(app, "db.restore", "--from", newest, check=True)
    assert f"restored {newest} over the SQLite database" in restored.stdout
    assert posts(web) == 1


def test_a_failed_push_is_unhealthy_said_in_one_line_and_mended_by_the_next_run(pair):
    web, backup, app, _ = pair
    on(backup, "mv /var/lib/fab-backups/hello-world/.ssh/authorized_keys /root/keys")
    failed = run(app, "db.backup")
    line = next(x for x in failed.stdout.splitlines() if "backup      failed" in x)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert f"the backup or its push to {backup.name} failed: fab-backup-hello-world@" \
        f"{backup.address}: Permission denied (publickey" in line  # ssh's own words
    on(web, f"systemctl start {UNIT}", check=False)  # the timer's run fails alike
    assert "Permission denied (publickey" in run(app, "logs", "-c", "backups", "-n", "50").stdout
    status = status_of(app)
    assert not status["healthy"] and \
        f"the last off-site backup to {backup.name} failed (fab logs -c backups)" in \
        status["problems"]
    mended = run(app, "provision", check=True)
    assert f"off-site backups to {backup.name} ready" in mended.stdout
    run(app, "db.backup", check=True)
    assert status_of(app)["healthy"]


def test_the_key_a_teammate_lacks_is_copied_and_a_wrong_one_is_refused(pair):
    web, backup, app, key = pair
    good = key.read_text()
    key.unlink()  # a teammate without a copy: they get the server's
    copied = run(app, "provision", check=True)
    assert f"copied this server's key to {key}" in copied.stdout and key.read_text() == good
    key.write_text("w" * 43 + "\n")  # a key that does not open the repository
    wrong = run(app, "provision")
    line = next(x for x in wrong.stdout.splitlines() if "offsite     failed" in x)
    assert wrong.returncode == 1 and f"the backups on {backup.name} were made with another " \
        f"key than the one in {key}: put that one there" in line
    assert on(web, f"cat /etc/{APP}/backup-key") == good  # the server's copy stayed
    key.write_text(good)
    run(app, "provision", check=True)
    run(app, "db.backup", check=True)


@pytest.mark.slow
def test_disaster_drill_a_new_server_gets_the_data_back_from_the_backup_host(tmp_path):
    with booted() as web, booted() as backup:
        app, key = site_files(tmp_path, web, backup, "postgresql")
        run(app, "provision", check=True)
        assert http_get(web, "/add/written-before-the-disaster")[2] == "added"
        on(web, f"systemctl start {UNIT}")  # the scheduled backup, triggered
        assert status_of(app)["columns"]["off-site"]["ok"]

        sandbox.destroy(web.name)  # the server and its disk are gone
        web = sandbox.boot(web.name)  # its address may differ: another test may boot meanwhile
        run(app, "provision", check=True)
        assert posts(web) == 0
        listed = run(app, "db.restore")
        newest = listed.stdout.split(f"on {backup.name}: ")[1].split(",")[0].split()[0]
        restored = run(app, "db.restore", "--from", newest, check=True)
        assert f"{newest}" in restored.stdout
        assert page_when(web, "v1 COMPILED BANNER posts=1 done=1") == \
            "v1 COMPILED BANNER posts=1 done=1"
        assert status_of(app)["healthy"]

        sandbox.destroy(backup.name)  # and now the backup host is gone too
        sandbox.destroy(web.name)
        web = sandbox.boot(web.name)  # its address may differ: another test may boot meanwhile
        again = run(app, "provision")
        line = next(x for x in again.stdout.splitlines() if "offsite     failed" in x)
        assert again.returncode == 1 and f"the backup host (app.roles.backup): cannot " \
            f"resolve {backup.name}" in line and "Traceback" not in again.stderr
        assert http_get(web, "/add/written-on-the-new-server")[2] == "added"
        refused = run(app, "db.restore", "--from", newest)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"off-site backups to {backup.name} are not set up on this host" in \
            refused.stdout
        assert posts(web) == 1  # nothing changed
        assert key.exists()

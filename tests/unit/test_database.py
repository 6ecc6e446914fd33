"""The database step and backups: made on the server, never changed under data."""


import pytest
from invoke import Config

from tasks import release, revision
from tasks.config import load
from tasks.shell import DeployError
from tasks.steps import needs
from tests.unit.stack import LITE, MY, PG, S, converged_facts, database_facts


def test_a_database_is_planned_on_a_fresh_server_and_is_ok_when_converged():
    from tasks.steps import database
    fresh = converged_facts(PG)
    plan = database.plan(PG, fresh)
    assert [c.said for c in plan.changes] == [
        "", "started postgresql",
        "set up the postgresql database hello_world on localhost, redis on localhost"]
    assert "Restart=on-failure" in plan.changes[0].script
    assert database.plan(PG, database_facts()).changes == []
    assert database.plan(PG, database_facts()).ok == (
        "postgresql database hello_world on localhost, redis on localhost ready")
    assert "postgresql" in needs(PG).packages and "redis-server" in needs(PG).packages
    assert "mariadb-server" in needs(MY).packages and "sqlite3" in needs(LITE).packages


def test_passwords_are_made_on_the_server_and_reach_clients_only_on_stdin():
    from tasks.steps import database
    for s in (PG, MY):
        script = database.setup_script(s, converged_facts(s))
        assert "secrets.token_hex" in script and "PASSWORD '$pw'" in script.replace(
            "IDENTIFIED BY '$pw'", "PASSWORD '$pw'")
        for line in script.splitlines():  # only heredocs (stdin) and printf (a builtin)
            if "$pw" in line or "$rp" in line:
                assert not line.startswith(("psql", "mysql", "runuser", "echo")), line
        assert "chown root:hello-world /etc/hello-world/database.env.fab-new" in script
        assert "chmod 0640" in script and "umask 077" in script


def test_the_engine_of_an_app_with_data_is_never_changed():
    from tasks.steps import database
    f = database_facts(PG)
    with pytest.raises(DeployError) as e:
        database.plan(MY, f)
    assert str(e.value).startswith("app.database=mysql, but the app's data is in its "
                                   "postgresql database hello_world")
    assert "never moves or drops it" in str(e.value)
    none = load(Config(overrides={"app": {}}))
    with pytest.raises(DeployError):
        database.plan(none, f)


def test_an_env_file_with_database_url_wins_over_a_local_database(tmp_path):
    from tasks.steps import database
    env = tmp_path / "prod.env"
    env.write_text("SECRET_KEY=x\nDATABASE_URL=postgresql://u:p@db.example.org/shop\n")
    s = load(Config(overrides={"app": {"database": "postgresql", "env_file": str(env)}}))
    assert s.managed_database == "none" and "postgresql" not in needs(s).packages
    assert database.plan(s, converged_facts(s)).ok == \
        "DATABASE_URL from app.env_file (an external database)"


def test_the_driver_joins_the_venv_unless_the_app_pins_its_own():
    assert revision.extras_line(PG).endswith(b"psycopg2-binary==2.9.10")
    assert revision.extras_line(MY).endswith(b"PyMySQL==1.1.1")
    assert revision.extras_line(S).endswith(b"gunicorn==23.0.0")
    script = "\n".join(release.release_script(PG, [], "r", "h", "v" * 16, True))
    assert "'^[[:space:]]*psycopg2(-binary)?([^A-Za-z0-9_.-]|$)'" in script
    assert 'extra="$extra psycopg2-binary==2.9.10"' in script


def test_backups_are_root_only_named_by_time_and_release_and_pruned():
    from tasks.backups import NAME_RE, backup_script, restore_script
    script = backup_script(PG)
    assert "umask 077" in script and "install -d -o root -g root -m 0700 /srv/hello-world/" \
        "backups" in script
    assert "pg_dump -Fc -d hello_world" in script and "head -n -10" in script
    assert "mysqldump --single-transaction" in backup_script(MY)
    lite = backup_script(LITE)
    assert "src.backup(dst)" in lite and "runuser -u hello-world -- python3" in lite
    assert NAME_RE.fullmatch("20261127T120000Z-20261127T110000Z-abcd1234.pgdump")
    assert not NAME_RE.fullmatch("../../etc/shadow") and not NAME_RE.fullmatch("x.pgdump")
    restore = restore_script(PG, "20261127T120000Z-none.pgdump")
    assert restore.index("supervisorctl stop hello-world") < restore.index("DROP DATABASE")
    assert "pg_restore --no-owner --role=hello_world -d hello_world" in restore


def test_the_backup_name_pattern_is_the_same_for_python_and_grep():
    import subprocess

    from tasks.backups import NAME_RE
    names = "20261127T120000Z-none.pgdump\nx.pgdump\n20261127T120000Z-r.sql.gz\n"
    out = subprocess.run(["grep", "-E", NAME_RE.pattern], input=names, capture_output=True,
                         text=True).stdout.split()
    assert out == [n for n in names.split() if NAME_RE.fullmatch(n)] and len(out) == 2

"""`fab deploy`, `rollback` and `releases` on a real server, under a bounded load.

The module's tests share one server and run in order; each leaves it serving a known text.
"""

import json
import shutil
import subprocess
import time

import pytest

import sandbox
from tasks.installer import UV, UV_HOME, UV_VERSION
from tests.conftest import FAB, PROJECT, boot, destroy, fab, http_get, on, recap
from tests.load import Load

BROKEN = {
    "import error": "import no_such_module\n",
    "500 on /": "\n@app.route('/', endpoint='boom')\ndef boom():\n    return 1 / 0\n",
}


def make_app(root, text, extra_requirement=None, extra_code=""):
    """A copy of hello_world answering TEXT (and optionally broken or with one more dep)."""
    app = root / text.replace(" ", "-")
    shutil.copytree(PROJECT / "hello_world", app, dirs_exist_ok=True)
    code = (app / "app.py").read_text().replace('"Hello world"', repr(text))
    if extra_code:
        code = code.replace('@app.route("/")', "# replaced\n@app.route('/old')") + extra_code
    (app / "app.py").write_text(code)
    if extra_requirement:
        with open(app / "requirements.txt", "a") as f:
            f.write(extra_requirement + "\n")
    return app


def deploy(server, app, *args, **env):
    return fab("-H", server.name, "deploy", *args,
               env={"FABRIC_APP_SOURCE": str(app), **env})


def live_release(server):
    return on(server, "readlink /srv/hello-world/current").strip().rpartition("/")[2]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A fresh server brought up by `fab deploy` alone (no provision first)."""
    s = boot()
    try:
        proc = fab("-H", s.name, "deploy", check=True)
        assert recap(proc, s.name) == "ok=1 changed=6 failed=0"
        assert "] health      ok       HTTP 200" in proc.stdout
        yield s, tmp_path_factory.mktemp("apps")
    finally:
        destroy(s)


def deploy_under_load(server, app, **env):
    with Load(server.address, clients=20, max_seconds=180) as load:
        time.sleep(0.5)
        proc = deploy(server, app, **env)
        time.sleep(0.5)
    return proc, load


def test_deploy_on_a_fresh_server_just_works(live):
    s, _ = live
    assert http_get(s)[2] == "Hello world"


def test_code_only_deploy_has_zero_downtime_and_installs_nothing(live):
    s, apps = live
    venvs = on(s, "ls /srv/hello-world/venvs")
    proc, load = deploy_under_load(s, make_app(apps, "Hello two"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "new virtualenv" not in proc.stdout
    # lock and facts, upload, build, candidate, switch, candidate stopped, prune with the
    # facts again, lock given back
    assert "(8 SSH round trips," in proc.stdout
    assert on(s, "ls /srv/hello-world/venvs") == venvs
    assert load.failures({"Hello world", "Hello two"}) == {}
    assert load.results[(200, "Hello two")] > 0 and load.total > 100
    assert {http_get(s)[2] for _ in range(20)} == {"Hello two"}


FLASK_IN_UVS_CACHE = "readlink /var/cache/fab-uv/hello-world/wheels-v*/pypi/flask/*-none-any"


def test_requirements_change_deploy_has_zero_downtime(live):
    s, apps = live
    flask = on(s, FLASK_IN_UVS_CACHE).strip()
    app = make_app(apps, "Hello three", extra_requirement="itsdangerous==2.2.0")
    proc, load = deploy_under_load(s, app)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "with new virtualenv" in proc.stdout
    assert load.failures({"Hello two", "Hello three"}) == {}
    assert {http_get(s)[2] for _ in range(20)} == {"Hello three"}
    # uv built it, from its cache: the unchanged flask wheel is the one unpacked before
    venv = "/srv/hello-world/current/.venv/"
    assert f"uv = {UV_VERSION}" in on(s, f"cat {venv}pyvenv.cfg")
    assert flask.startswith("../../../archive-v0/") and on(s, FLASK_IN_UVS_CACHE).strip() == flask
    assert on(s, f"find {venv} ! -user root | head -n1").strip() == ""  # sealed root's
    assert on(s, f"stat -c '%U %a' /var/cache/fab-uv/hello-world {UV}").split() == \
        ["fab-build-hello-world", "700", "root", "755"]


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_release_never_serves_and_fails_loudly(live, kind):
    s, apps = live
    before = live_release(s)
    broken = make_app(apps, f"Broken {kind}", extra_code=BROKEN[kind])
    proc, load = deploy_under_load(s, broken, FABRIC_APP_HEALTH_TIMEOUT="5")
    assert proc.returncode == 1
    assert "] app         failed   the new release is unhealthy" in proc.stdout
    assert ("no_such_module" if kind == "import error" else "HTTP 500") in proc.stdout
    assert "Traceback" not in proc.stderr
    assert load.failures({"Hello three"}) == {}
    assert live_release(s) == before
    assert http_get(s)[2] == "Hello three"


def test_a_requirement_that_cannot_install_fails_and_leaves_nothing_behind(live):
    s, apps = live
    before = on(s, "ls /srv/hello-world/releases")
    bad = make_app(apps, "Hello bad pin", extra_requirement="no-such-package-zz==9.9")
    proc = deploy(s, bad)
    assert proc.returncode == 1
    assert "] app         failed   the virtualenv could not be built with the server's Python " \
        "3." in proc.stdout and "No solution found when resolving dependencies: Because " \
        "no-such-package-zz was not found in the package registry" in proc.stdout
    assert on(s, "ls /srv/hello-world/releases") == before
    assert http_get(s)[2] == "Hello three"


def test_releases_marks_the_live_one(live):
    s, _ = live
    out = fab("-H", s.name, "releases", check=True).stdout.splitlines()
    assert len(out) == 3  # world, two, three: the broken ones were removed
    assert out[0] == f"[{s.name}] * {live_release(s)}"


def test_rollback_restores_the_previous_release_without_downtime(live):
    s, _ = live
    with Load(s.address, clients=20, max_seconds=120) as load:
        time.sleep(0.5)
        proc = fab("-H", s.name, "rollback")
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures({"Hello two", "Hello three"}) == {}
    assert http_get(s)[2] == "Hello two"
    back = fab("-H", s.name, "rollback", "--to", "nonexistent")
    assert back.returncode == 1 and "no release 'nonexistent'" in back.stdout


def test_history_lists_every_run_newest_first_and_only_root_writes_it(live):
    s, _ = live
    entries = json.loads(fab("-H", s.name, "history", "--json", check=True).stdout)
    said = [(e["action"], e["result"]) for e in entries]
    assert said[:3] == [("rollback", "failed"), ("rollback", "changed"), ("deploy", "failed")]
    assert said[-1] == ("deploy", "changed") and len(said) >= 6
    assert "no release 'nonexistent'" in entries[0]["failure"]
    assert entries[1]["release"] == live_release(s)
    assert all(e["host"] == s.name and e["by"].startswith("tom for ") for e in entries)
    times = [e["time"] for e in entries]
    assert times == sorted(times, reverse=True) and all(t.endswith("Z") for t in times)
    # the first deploy shipped the project's own hello_world: its git commit
    head = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert entries[-1]["revision"].startswith(head)
    assert all(e["revision"] for e in entries if e["action"] == "deploy")
    table = fab("-H", s.name, "history", "--limit", "2", check=True).stdout.splitlines()
    assert len(table) == 2 and table[0].startswith(f"[{s.name}] ") and "rollback" in table[0]
    log = "/var/log/fab/hello-world.jsonl"
    assert on(s, f"stat -c '%U:%G %a' {log}").strip() == "root:adm 640"
    assert "Permission denied" in on(s, f"runuser -u hello-world -- sh -c 'echo x >> {log}' 2>&1",
                                     check=False)


def test_a_second_concurrent_deploy_fails_fast_naming_the_holder(live):
    s, apps = live
    slow = make_app(apps, "Hello four", extra_requirement="blinker==1.9.0\nmarkupsafe==3.0.2")
    argv = [FAB, "-S", str(sandbox.STATE / "ssh_config"), "-H", s.name, "deploy"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**__import__("os").environ, "FABRIC_APP_SOURCE": str(slow)})
    try:
        deadline = time.monotonic() + 30
        while "changing" not in on(s, "ls /run/fab/hello-world.lock 2>/dev/null || true") \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        second = deploy(s, make_app(apps, "Hello five"))
        assert time.monotonic() - started < 10
        assert second.returncode == 1
        assert "another deploy holds the lock (" in second.stdout
        assert "run again with --break-lock" in second.stdout
    finally:
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out
    assert http_get(s)[2] == "Hello four"


def test_a_lock_the_server_cannot_judge_is_broken_only_when_asked(live):
    """A lock without the session that took it (an older version's, a hand-made one)."""
    s, apps = live
    on(s, "mkdir -p /run/fab/hello-world.lock && echo 'ghost@gone since long ago' "
          "> /run/fab/hello-world.lock/holder")
    blocked = deploy(s, make_app(apps, "Hello six"))
    assert blocked.returncode == 1 and "ghost@gone since long ago" in blocked.stdout
    assert deploy(s, make_app(apps, "Hello six"), "--break-lock").returncode == 0
    assert http_get(s)[2] == "Hello six"
    assert on(s, "ls /run/fab").count("hello-world") == 0


def test_only_the_newest_releases_are_kept(live):
    s, apps = live
    for n in range(3):
        deploy(s, make_app(apps, f"Keep {n}"), FABRIC_APP_KEEP_RELEASES="2")
    releases = on(s, "ls /srv/hello-world/releases").split()
    assert len(releases) == 2 and live_release(s) in releases
    venvs = on(s, "ls /srv/hello-world/venvs").split()
    assert len(venvs) == 1  # no release uses the others any more


def test_the_env_file_reaches_the_app_and_nowhere_else(live):
    s, apps = live
    app = make_app(apps, "Hello env", extra_code=(
        "\nimport os\n\n\n@app.route('/', endpoint='env')\ndef env():\n"
        "    return os.environ['GREETING']\n"))
    env_file = apps / "prod.env"
    env_file.write_text("# secrets\nGREETING=Hello from the env file\nAPI_KEY='s3cr3t-value'\n")
    env = {"FABRIC_APP_ENV_FILE": str(env_file)}
    dry = deploy(s, app, "--dry-run", **env)
    assert "+GREETING=****" in dry.stdout and "+API_KEY=****" in dry.stdout
    proc = deploy(s, app, **env)
    assert proc.returncode == 0, proc.stdout
    assert http_get(s)[2] == "Hello from the env file"
    assert "s3cr3t" not in proc.stdout + proc.stderr + dry.stdout + dry.stderr
    assert on(s, "stat -c '%U:%G %a' /etc/hello-world/env").strip() == "root:hello-world 640"
    assert "s3cr3t" not in on(s, "ps -eo args; cat /etc/supervisor/conf.d/hello-world.conf")
    assert "Permission denied" in on(s, "su -s /bin/sh -c 'cat /etc/hello-world/env' www-data "
                                        "2>&1 || true")
    env_file.write_text("GREETING=Hello changed\n")
    with Load(s.address, clients=10, max_seconds=120) as load:
        assert deploy(s, app, **env).returncode == 0
    assert load.failures({"Hello from the env file", "Hello changed"}) == {}
    assert http_get(s)[2] == "Hello changed"


def commit(work, text):
    """Make WORK's app answer TEXT and commit it; return the commit's sha."""
    app = work / "app.py"
    app.write_text((PROJECT / "hello_world/app.py").read_text().replace('"Hello world"',
                                                                        repr(text)))
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", text], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def publish(server, work):
    """Put WORK's history on the server as the bare repository /srv/app.git."""
    bare = work.parent / "app.git"
    shutil.rmtree(bare, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    tar = subprocess.run(["tar", "-C", str(work.parent), "-cf", "-", "app.git"], check=True,
                         capture_output=True).stdout
    subprocess.run([*sandbox.ssh_argv(server), "rm -rf /srv/app.git && tar -C /srv -xf -"],
                   input=tar, check=True)


def test_a_git_source_is_released_by_commit_and_only_when_it_moves(live):
    s, apps = live
    work = apps / "git-work"
    shutil.copytree(PROJECT / "hello_world", work)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    first = commit(work, "Hello from git")
    publish(s, work)
    env = {"FABRIC_APP_SOURCE": "file:///srv/app.git"}
    proc = fab("-H", s.name, "deploy", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"-{first[:8]}" in proc.stdout and http_get(s)[2] == "Hello from git"
    assert live_release(s).endswith(first[:8])
    assert on(s, f"ls -a /srv/hello-world/releases/{live_release(s)}").split() == \
        [".", "..", ".fab-release", ".venv", "app.py", "requirements.txt", "static"]
    assert recap(fab("-H", s.name, "deploy", env=env), s.name) == "ok=6 changed=0 failed=0"
    second = commit(work, "Hello again from git")
    publish(s, work)
    with Load(s.address, clients=10, max_seconds=120) as load:
        proc = fab("-H", s.name, "deploy", env={**env, "FABRIC_APP_REF": "main"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures({"Hello from git", "Hello again from git"}) == {}
    assert live_release(s).endswith(second[:8]) and http_get(s)[2] == "Hello again from git"
    missing = fab("-H", s.name, "deploy", env={**env, "FABRIC_APP_REF": "no-such-branch"})
    assert missing.returncode == 1
    assert "app         failed   no commit no-such-branch in file:///srv/app.git" in missing.stdout
    assert http_get(s)[2] == "Hello again from git"


def test_where_uv_cannot_be_installed_pip_builds_the_venv(live):
    s, apps = live
    on(s, f"mv {UV_HOME} /root/uv && rm -rf /usr/local/lib/fab && touch /usr/local/lib/fab")
    try:
        proc = deploy(s, make_app(apps, "Hello pip", extra_requirement="blinker==1.9.0"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "(uv could not be installed here: pip built it)" in proc.stdout
        assert "uv = " not in on(s, "cat /srv/hello-world/current/.venv/pyvenv.cfg")
        assert http_get(s)[2] == "Hello pip"
    finally:
        on(s, f"rm -f /usr/local/lib/fab && mkdir /usr/local/lib/fab && mv /root/uv {UV_HOME}")

"""A compromised app must not reach root, and nothing in the app's source can act as root.

One server runs a hostile app: its endpoints, running as the app's own account, try
what an attacker would (sudo, replacing the deploy tree, writing the code and the venv,
reading another app's secrets, squatting the lock). Every attempt must fail, and
deploy, rollback and provision must still work and touch nothing outside the tree.
Then what a git source or a package may carry: a committed link where root writes
a marker, build code in a package, a token in the git URL.
"""

import json
import shutil
import subprocess
import textwrap

import pytest

import sandbox
from tests.conftest import PROJECT, fab, http_get, on, recap

HOSTILE = '''\
import json, os, subprocess
from flask import Flask

app = Flask(__name__)
TREE = "/srv/hello-world"


def attempt(fn):
    try:
        fn()
        return "succeeded"
    except Exception as e:
        return f"denied ({type(e).__name__})"


def sudo():
    subprocess.run(["sudo", "-n", "true"], check=True, capture_output=True)


def write(path):
    with open(path, "w") as f:
        f.write("pwned")


@app.route("/")
def index():
    return "Hello hostile"


@app.route("/attack")
def attack():
    release = os.path.realpath(TREE + "/current")
    venv = os.path.realpath(release + "/.venv")
    return json.dumps({
        "whoami": subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip(),
        "sudo": attempt(sudo),
        "rename the tree": attempt(lambda: os.rename(TREE, TREE + ".x")),
        "replace releases with a link": attempt(
            lambda: (os.rename(TREE + "/releases", "/tmp/r"),
                     os.symlink("/srv/victim", TREE + "/releases"))),
        "repoint current": attempt(lambda: os.symlink("/srv/victim", TREE + "/current.fab-new")),
        "write the code": attempt(lambda: write(release + "/app.py")),
        "add code": attempt(lambda: write(release + "/evil.py")),
        "write the venv": attempt(lambda: write(venv + "/bin/gunicorn")),
        "write a marker": attempt(lambda: write(release + "/.fab-release")),
        "read another app's env": attempt(lambda: open("/etc/other/env").read()),
        "plant a link in the logs": attempt(
            lambda: os.symlink("/etc/shadow", "/var/log/hello-world/app.log.1")),
        "squat the lock": attempt(lambda: os.mkdir("/run/fab/hello-world.lock")),
        "write the program": attempt(lambda: write("/etc/supervisor/conf.d/hello-world.conf")),
    })
'''


def hostile_app(apps):
    path = apps / "hostile"
    if not path.exists():
        shutil.copytree(PROJECT / "hello_world", path)
        (path / "app.py").write_text(HOSTILE)
    return path


@pytest.fixture(scope="module")
def hostile(module_server):
    s, apps = module_server
    on(s, "install -d /srv/victim && touch /srv/victim/a /srv/victim/b")
    env = apps / "other.env"
    env.write_text("OTHER_SECRET=s3cr3t-of-other\n")
    fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": str(hostile_app(apps))}, check=True)
    # A second app's account, tree and env file: only its `app` step, no site.
    fab("-H", s.name, "app", env={"FABRIC_APP_NAME": "other", "FABRIC_APP_ENV_FILE": str(env)},
        check=True)
    return s, apps


def attack(s):
    return json.loads(http_get(s, "/attack")[2])


def test_the_app_runs_as_its_own_account_without_sudo_or_login(hostile):
    s, _ = hostile
    assert on(s, "getent passwd hello-world").strip().endswith(":/nonexistent:/usr/sbin/nologin")
    assert on(s, "id -Gn hello-world").split() == ["hello-world"]
    assert on(s, "stat -c '%U:%G %a' /srv /srv/hello-world /srv/hello-world/releases").split() \
        == ["root:root", "755"] * 3


def test_every_attack_from_the_app_fails(hostile):
    s, _ = hostile
    results = attack(s)
    assert results.pop("whoami") == "hello-world"
    assert {k: v for k, v in results.items() if not v.startswith("denied")} == {}
    assert on(s, "ls /srv/victim").split() == ["a", "b"]
    assert on(s, "ls /srv").split() == ["hello-world", "other", "victim"]


def test_deploy_rollback_and_provision_after_the_attacks_change_nothing_outside(hostile):
    s, apps = hostile
    attack(s)
    env = {"FABRIC_APP_SOURCE": str(hostile_app(apps))}
    (apps / "hostile" / "static" / "v2.css").write_text("body {}\n")
    assert recap(fab("-H", s.name, "deploy", env=env), s.name) == "ok=5 changed=1 failed=0"
    assert recap(fab("-H", s.name, "rollback"), s.name) == "ok=0 changed=1 failed=0"
    assert recap(fab("-H", s.name, "provision", env=env), s.name).startswith("ok=4 changed=1")
    assert on(s, "ls /srv/victim").split() == ["a", "b"]
    assert "pwned" not in on(s, "cat /etc/supervisor/conf.d/hello-world.conf")
    assert attack(s)["whoami"] == "hello-world"


def test_a_tree_the_app_user_can_write_is_refused_with_one_line(hostile):
    s, _ = hostile
    on(s, "install -d -o root -g hello-world -m 0775 /srv/shared-parent")
    proc = fab("-H", s.name, "provision", env={"FABRIC_APP_DIR": "/srv/shared-parent/app"})
    assert proc.returncode == 1
    assert ("app         failed   /srv/shared-parent is writable by the app user hello-world "
            "(root:hello-world 775)") in proc.stdout
    assert on(s, "ls /srv/shared-parent").strip() == ""


def commit_all(work, message):
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", message], check=True)


@pytest.mark.slow
def test_a_committed_link_where_root_writes_a_marker_is_not_followed(hostile):
    s, apps = hostile
    work = apps / "linked"
    shutil.copytree(PROJECT / "hello_world", work)
    (work / ".fab-release").symlink_to("/etc/fab-pwned")
    (work / ".venv").symlink_to("/etc/fab-pwned-dir")
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    commit_all(work, "links where root writes")
    bare = apps / "linked.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    tar = subprocess.run(["tar", "-C", str(apps), "-cf", "-", "linked.git"], check=True,
                         capture_output=True).stdout
    subprocess.run([*sandbox.ssh_argv(s), "tar -C /srv -xf -"], input=tar, check=True)
    proc = fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": "file:///srv/linked.git"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert on(s, "ls /etc/fab-pwned /etc/fab-pwned-dir 2>&1 | grep -c 'No such'").strip() == "2"
    assert http_get(s)[2] == "Hello world"
    assert on(s, "stat -c %F /srv/hello-world/current/.fab-release").strip() == "regular file"


def test_a_package_build_runs_as_the_build_account_never_root(hostile):
    s, apps = hostile
    app = apps / "buildhook"
    shutil.copytree(PROJECT / "hello_world", app)
    pkg = app / "buildhook"
    pkg.mkdir()
    (pkg / "setup.py").write_text(textwrap.dedent("""\
        import os
        from setuptools import setup
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "uid"), "w") as f:
            f.write(str(os.getuid()))  # in place: a build writes only its release
        setup(name="buildhook", version="1.0", py_modules=[])
    """))
    (app / "requirements.txt").write_text(
        (PROJECT / "hello_world/requirements.txt").read_text() + "./buildhook\n")
    proc = fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": str(app)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    uid = on(s, "cat /srv/hello-world/current/buildhook/uid").strip()
    assert uid == on(s, "id -u fab-build-hello-world").strip() and uid != "0"
    venv = on(s, "readlink -f /srv/hello-world/current/.venv").strip()
    assert on(s, f"find {venv} ! -user root | wc -l").strip() == "0"
    assert on(s, f"find {venv} -perm /022 ! -type l | wc -l").strip() == "0"


GIT_SITE = """\
server {
    listen 127.0.0.1:8099;
    root /srv/git-http;
    auth_basic "git";
    auth_basic_user_file /etc/nginx/git.htpasswd;
}
"""
TOKEN = "tok-3f9a2c71e5"
GIT_SHIM = """\
#!/bin/sh
{ printf '%s\\n' "$*"; tr '\\0' ' ' < /proc/$PPID/cmdline; echo; } >> /root/git-argv.log
exec /usr/bin/git "$@"
"""


@pytest.mark.slow
def test_a_token_in_a_git_url_reaches_no_command_line_and_no_output(hostile):
    s, apps = hostile
    work = apps / "tokened"
    shutil.copytree(PROJECT / "hello_world", work)
    (work / "app.py").write_text((work / "app.py").read_text().replace('"Hello world"',
                                                                       '"Hello private"'))
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    commit_all(work, "private")
    bare = apps / "private.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    tar = subprocess.run(["tar", "-C", str(apps), "-cf", "-", "private.git"], check=True,
                         capture_output=True).stdout
    subprocess.run([*sandbox.ssh_argv(s), "mkdir -p /srv/git-http && tar -C /srv/git-http -xf -"],
                   input=tar, check=True)
    on(s, f"printf 'deploy:{{PLAIN}}{TOKEN}\\n' > /etc/nginx/git.htpasswd && "
          f"printf %s '{GIT_SITE}' > /etc/nginx/sites-enabled/git-test && systemctl reload nginx")
    # Every git command root runs, with the script that ran it (a shim first on root's PATH),
    # and every process's command line sampled while the deploys run (bounded: 60 s).
    subprocess.run([*sandbox.ssh_argv(s), "cat > /usr/local/bin/git; chmod 755 /usr/local/bin/git"],
                   input=GIT_SHIM, text=True, check=True)
    on(s, "rm -f /root/ps.log; (for i in $(seq 3000); do ps -eo args >> /root/ps.log; "
          "[ -e /root/ps.stop ] && break; sleep 0.02; done) >/dev/null 2>&1 &")
    url = f"http://deploy:{TOKEN}@127.0.0.1:8099/private.git"
    try:
        dry = fab("-H", s.name, "deploy", "--dry-run", env={"FABRIC_APP_SOURCE": url})
        proc = fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": url})
    finally:
        on(s, "touch /root/ps.stop; sleep 0.2; rm -f /usr/local/bin/git")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert http_get(s)[2] == "Hello private"
    git_argv = on(s, "cat /root/git-argv.log")
    assert "http://127.0.0.1:8099/private.git" in git_argv  # the shim saw the fetch
    assert TOKEN not in git_argv and TOKEN not in on(s, "cat /root/ps.log")
    assert TOKEN not in proc.stdout + proc.stderr + dry.stdout + dry.stderr
    assert "****@127.0.0.1" in dry.stdout
    assert TOKEN not in on(s, "cat /srv/hello-world/repo.git/config")
    assert on(s, "stat -c '%U %a' /srv/hello-world/repo.git.credentials").strip() == "root 600"
    again = fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": url})
    assert recap(again, s.name) == "ok=6 changed=0 failed=0"

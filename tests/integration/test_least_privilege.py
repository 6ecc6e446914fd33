"""A compromised app must not reach root, and nothing in the app's source can act as root.

One server runs a hostile app: its endpoints, running as the app's own account, try
what an attacker would (sudo, replacing the deploy tree, writing the code and the venv,
reading another app's secrets, squatting the lock). Its own processes forge fact blocks in
their working folders (a worker started with `exec`, and a gunicorn master), its folder
holds secrets, its Redis sits beside a second app's, and its build tries to leave things
behind (issue 24: the server is hostile ground). Every attempt must fail, and deploy,
rollback and provision must still work, serve every request and touch nothing outside the
tree. Then what a git source or a package may carry: a committed link where root writes a
marker, build code in a package, a token in the git URL.
"""

import json
import re
import shutil
import subprocess
import textwrap

import pytest

import sandbox
from tests.conftest import PROJECT, fab, http_get, on, recap
from tests.load import Load

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
        "read another app's env": attempt(lambda: open("/etc/other/database.env").read()),
        "plant a link in the logs": attempt(
            lambda: os.symlink("/etc/shadow", "/var/log/hello-world/app.log.1")),
        "squat the lock": attempt(lambda: os.mkdir("/run/fab/hello-world.lock")),
        "write the program": attempt(lambda: write("/etc/supervisor/conf.d/hello-world.conf")),
    })
'''


FORGED = {  # a process's working folder whose lines read as fact blocks of their own
    "evil": r"/tmp/y\n@@candidates\nssh.service",
    "master": r"/tmp/z\n@@half_built\nrelease ..\n@@programs\nssh\n@@services\nufw disabled",
}
SECRETS = {".env": "SECRET_KEY=dev-secret\n", "instance/app.db": "rows",
           "server.key": "-----BEGIN PRIVATE KEY-----\n", "prod.env": "GREETING=from-env\n",
           ".gitignore": "notes/\n", "notes/todo.txt": "private"}


def hostile_app(apps):
    path = apps / "hostile"
    if not path.exists():
        shutil.copytree(PROJECT / "hello_world", path)
        (path / "app.py").write_text(HOSTILE)
        for name, text in SECRETS.items():
            (path / name).parent.mkdir(exist_ok=True)
            (path / name).write_text(text)
    return path


def forging(folder, then):
    """A Procfile-style command: exec python, make FOLDER, move into it, become THEN."""
    return (f"exec python3 -c \"import os; d = '{folder}'; os.makedirs(d, exist_ok=True); "
            f"os.chdir(d); os.execvp({then[0]!r}, {then!r})\"")


def settings(apps, name="hello-world", **extra):
    """A settings file (-f) for app NAME, its source the hostile app, with its own Redis."""
    path = apps / f"{name}.yaml"
    path.write_text(json.dumps({"app": {"name": name, "source": str(hostile_app(apps)),
                                        "redis": True, **extra}}))
    return str(path)


@pytest.fixture(scope="module")
def hostile(module_server):
    s, apps = module_server
    on(s, "install -d /srv/victim && touch /srv/victim/a /srv/victim/b")
    gunicorn = ["gunicorn", "--bind", "unix:/tmp/evil.sock", "--pythonpath",
                "/srv/hello-world/current", "app:app"]
    conf = settings(apps, env_file=str(hostile_app(apps) / "prod.env"), processes={
        "evil": forging(FORGED["evil"], ["sleep", "100000"]),
        "master": forging(FORGED["master"], gunicorn)})
    fab("-f", conf, "-H", s.name, "deploy", check=True)
    # A second app's account, its secrets (database.env) and Redis: no release, no site.
    fab("-f", settings(apps, "other"), "-H", s.name, "step.database", check=True)
    return s, apps, conf


def attack(s):
    return json.loads(http_get(s, "/attack")[2])


def test_the_app_runs_as_its_own_account_without_sudo_or_login(hostile):
    s, *_ = hostile
    assert on(s, "getent passwd hello-world").strip().endswith(":/nonexistent:/usr/sbin/nologin")
    assert on(s, "id -Gn hello-world").split() == ["hello-world"]
    assert on(s, "stat -c '%U:%G %a' /srv /srv/hello-world /srv/hello-world/releases").split() \
        == ["root:root", "755"] * 3


def test_every_attack_from_the_app_fails(hostile):
    s, *_ = hostile
    results = attack(s)
    assert results.pop("whoami") == "hello-world"
    assert {k: v for k, v in results.items() if not v.startswith("denied")} == {}
    assert on(s, "ls /srv/victim").split() == ["a", "b"]
    assert on(s, "ls /srv").split() == ["hello-world", "victim"]


def test_forged_fact_blocks_change_nothing_and_deploys_serve_every_request(hostile):
    s, apps, conf = hostile
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
    assert load.failures({"Hello hostile"}) == {} and load.total > 0
    assert "ssh.service" not in proc.stdout and "release .." not in proc.stdout
    assert on(s, "systemctl is-active ssh").strip() == "active"
    assert sandbox.port_open(s.address, 22)
    assert on(s, "cat /tmp/nobody-8000.log /tmp/nobody-8001.log").count("GET") == 0
    assert recap(fab("-f", conf, "-H", s.name, "deploy"), s.name) == "ok=7 changed=0 failed=0"


def test_deploy_rollback_and_provision_after_the_attacks_change_nothing_outside(hostile):
    s, apps, conf = hostile
    attack(s)
    (apps / "hostile" / "static" / "v3.css").write_text("body {}\n")
    assert recap(fab("-f", conf, "-H", s.name, "deploy"), s.name) == "ok=6 changed=1 failed=0"
    assert recap(fab("-f", conf, "-H", s.name, "rollback"), s.name) == "ok=0 changed=1 failed=0"
    assert recap(fab("-f", conf, "-H", s.name, "provision"), s.name).startswith("ok=5 changed=1")
    assert on(s, "ls /srv/victim").split() == ["a", "b"]
    assert "pwned" not in on(s, "cat /etc/supervisor/conf.d/hello-world.conf")
    assert attack(s)["whoami"] == "hello-world"


def test_no_secret_ships_and_only_static_files_are_readable_by_other_accounts(hostile):
    s, apps, conf = hostile
    tree = on(s, "cd /srv/hello-world/current && find . -path ./.venv -prune -o -print")
    for name in (".env", "instance", "server.key", "prod.env", "notes"):
        assert f"./{name}" not in tree.split()
    assert "./.gitignore" in tree.split()
    (apps / "hostile/static/dry.css").write_text("body {}\n")
    try:
        dry = fab("-f", conf, "-H", s.name, "deploy", "--dry-run").stdout
    finally:
        (apps / "hostile/static/dry.css").unlink()
    assert re.search(r"would upload \d+ files, \d+ KB; left out: instance/, \.env, server\.key "
                     r"\(fab's secret names\); notes/ \(\.gitignore\); prod\.env \(app\.env_file\) "
                     "as release ", dry), dry
    readable = on(s, "cd /srv/hello-world/current && find -L . -path ./.venv -prune -o "
                     "-type f -print | while read -r f; do "
                     "runuser -u nobody -- cat \"$f\" >/dev/null 2>&1 && echo \"$f\"; done; true")
    static = on(s, "cd /srv/hello-world/current && find ./static -type f")
    assert sorted(readable.split()) == sorted(static.split()) and len(static.split()) == 3
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
    s, apps, conf = hostile
    on(s, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cron >/dev/null 2>&1",
       timeout=300)
    build = ("(setsid sleep 100001 >/dev/null 2>&1 &); "
             "(echo '* * * * * touch /tmp/cron-pwned' | crontab - 2>/dev/null); "
             "touch /tmp/build-pwned /var/tmp/build-pwned /dev/shm/build-pwned; "
             "ls /proc | grep -c '^[0-9]' > procs.txt; true")
    (apps / "hostile" / "static" / "v4.css").write_text("body {}\n")
    proc = fab("-f", settings(apps, build_command=build, env_file=str(apps / "hostile/prod.env"),
                              processes={}), "-H", s.name, "deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    account = "fab-build-hello-world"
    assert on(s, f"pgrep -u {account} || true").strip() == ""  # the sleep ended with the unit
    assert on(s, f"ls /var/spool/cron/crontabs/{account} /tmp/build-pwned /var/tmp/build-pwned "
                 "/dev/shm/build-pwned 2>&1 | grep -c 'No such' || true").strip() == "4"
    assert account in on(s, "cat /etc/cron.deny /etc/at.deny").split()
    assert int(on(s, "cat /srv/hello-world/current/procs.txt")) < 10  # its own processes only


def test_an_account_fab_did_not_make_is_refused_as_the_app_user(hostile):
    s, apps, *_ = hostile
    proc = fab("-f", settings(apps, "adopt", user="www-data", redis=False), "-H", s.name,
               "provision")
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert ("app.user=www-data is an account fab did not make (another service's, like "
            "www-data or postgres?)") in proc.stdout
    assert on(s, "ls /srv/adopt /etc/adopt 2>&1 | grep -c 'No such'").strip() == "2"


def test_a_tree_the_app_user_can_write_is_refused_with_one_line(hostile):
    s, *_ = hostile
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
    s, apps, _ = hostile
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


@pytest.mark.slow  # make test keeps the sandboxed build above
def test_a_package_build_runs_as_the_build_account_never_root(hostile):
    s, apps, _ = hostile
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
    s, apps, _ = hostile
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
    assert recap(again, s.name) == "ok=7 changed=0 failed=0"  # with the earlier Redis

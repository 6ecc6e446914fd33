"""Interrupted runs on a real server: one case of each kind of fault (the full matrix is
`make faults`, tests/faults/), and the pieces that make a plain re-run converge: apt and
builds that outlive the connection, dpkg repaired, a dead run's lock taken over (a live
one's kept), status that reads what runs, and a disk too full for a release.

The module's tests share one server and run in order, the first on it fresh.
"""

import json
import shlex
import subprocess

import pytest
from invoke import Config

import sandbox
from tasks.config import load
from tasks.lock import acquire_script
from tests.conftest import FAB, fab, http_get, on
from tests.faults.harness import make_app, run_case
from tests.integration.test_deploy import live_release


@pytest.fixture(scope="module")
def server(module_server):
    return module_server


def test_apt_outlives_a_killed_provision_and_the_rerun_waits_for_it(server):
    """Killed while apt installs nginx, supervisor and ufw in the background (beside the
    app step of a fresh server's provision)."""
    s, _ = server
    proc = subprocess.Popen(
        [FAB, "-S", str(sandbox.STATE / "ssh_config"), "-H", s.name, "provision"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True)
    later = ("systemctl list-units --plain --no-legend --state=active "
             "'fab-hello-world.apt-later-*' | cut -d' ' -f1")
    sandbox.wait_for(lambda: on(s, later, check=False).strip(), 120, "the background apt")
    proc.kill()  # SIGKILL: the connection ends with fab
    proc.wait()
    # apt goes on, on the server, in its own service
    assert on(s, later).strip().startswith("fab-hello-world.apt-later-"), \
        "apt died with the connection"
    rerun = fab("-H", s.name, "provision", check=True)
    assert "took over the lock of a run that is gone" in rerun.stdout
    assert "waiting for the work an interrupted run left going to finish" in rerun.stdout
    assert "packages    changed  installed nginx, supervisor, ufw (in the background)" \
        in rerun.stdout
    assert on(s, "ls -A /run/fab | grep -c result || true").strip() == "0"  # collected
    # the killed run's line in the deploy log says so; the rerun's says how it ended
    log = [json.loads(line) for line in on(s, "cat /var/log/fab/hello-world.jsonl").splitlines()]
    assert [(e["action"], e["result"]) for e in log[-2:]] == \
        [("provision", "unfinished"), ("provision", "changed")]
    assert on(s, "ls -A /var/lib/dpkg/updates").strip() == ""
    assert http_get(s)[0] == 200


def test_an_interrupted_dpkg_is_repaired_and_said_so(server):
    s, _ = server
    # dpkg killed in the middle of an install, as a lost connection used to leave it
    on(s, "nohup sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q git "
          ">/tmp/apt.log 2>&1' >/dev/null 2>&1 &")
    sandbox.wait_for(lambda: on(s, "pgrep -x dpkg >/dev/null && echo yes", check=False).strip(),
               180, "dpkg to run")
    on(s, "pkill -9 -x dpkg; pkill -9 -x apt-get; true")
    sandbox.wait_for(lambda: not on(s, "pgrep -x dpkg || true").strip(), 10, "dpkg to die")
    assert on(s, "ls -A /var/lib/dpkg/updates").strip(), "dpkg was not caught mid-way"
    proc = fab("-H", s.name, "provision", check=True)
    assert "repaired an interrupted dpkg (dpkg --configure -a)" in proc.stdout
    assert on(s, "ls -A /var/lib/dpkg/updates").strip() == ""
    assert "packages    ok" in fab("-H", s.name, "provision", check=True).stdout


def test_status_reads_what_runs_and_deploy_restarts_what_an_interrupted_switch_left(server):
    """The issue's case: `current` switched (as a deploy killed right after the link's
    rename leaves it), the app not restarted."""
    s, root = server
    fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": str(make_app(root, "v-a"))},
        check=True)
    old = live_release(s)
    b = make_app(root, "v-b")
    fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": str(b)}, check=True)
    new = live_release(s)
    on(s, f"ln -sfn releases/{old} /srv/hello-world/current.x && "
          "mv -T /srv/hello-world/current.x /srv/hello-world/current")
    assert http_get(s)[2] == "v-b"
    status = fab("-H", s.name, "status")
    assert status.returncode == 1
    assert (f"hello-world still runs release {new}, not the current {old} (an interrupted "
            "switch): run `fab deploy` to restart it") in status.stdout
    proc = fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": str(root / "v-a")},
               check=True)
    assert f"restarted hello-world on the live release {old} (they still ran {new}" \
        in proc.stdout
    assert http_get(s)[2] == "v-a"
    assert fab("-H", s.name, "status").returncode == 0


def test_a_live_holder_keeps_the_lock_and_a_gone_one_loses_it(server):
    s, root = server
    # a run that has begun changing the server (a converged one's lock is taken over quietly)
    acquire = acquire_script(load(Config(overrides={"app": {}})), "tok", "ann@laptop since 9",
                             then=": > /run/fab/hello-world.lock/changing")
    holder = subprocess.Popen(
        [*sandbox.ssh_argv(s, "tom"), f"sudo sh -c {shlex.quote(acquire)} && sleep 120"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        sandbox.wait_for(lambda: on(s, "cat /run/fab/hello-world.lock/holder 2>/dev/null || true")
                   .strip() == "ann@laptop since 9", 20, "the lock")
        env = {"FABRIC_APP_SOURCE": str(make_app(root, "v-c"))}
        blocked = fab("-H", s.name, "deploy", env=env)
        assert blocked.returncode == 1
        assert "another deploy holds the lock (ann@laptop since 9)" in blocked.stdout
    finally:
        holder.kill()  # the holder's ssh client dies: its session ends on the server
        holder.wait()
    session = on(s, "cat /run/fab/hello-world.lock/session").strip()  # pid:start time
    assert session.partition(":")[2].isdigit()
    sandbox.wait_for(lambda: not on(s, f"[ -d /proc/{session.partition(':')[0]} ] && echo yes "
                                 "|| true").strip(), 20, "its sshd session to end")
    proc = fab("-H", s.name, "deploy", env=env, check=True)
    assert ("lock        note     took over the lock of a run that is gone "
            "(ann@laptop since 9): its SSH session has ended") in proc.stdout
    assert http_get(s)[2] == "v-c"


@pytest.mark.parametrize("fault,at,note", [
    ("kill", 3.0, "requirements"),  # inside the virtualenv's build
    # the other kinds: in make test-slow (and at many moments in make faults)
    pytest.param("cut", 1.0, "", marks=pytest.mark.slow),  # a 10 s network cut, code-only
    pytest.param("reboot", 1.5, "", marks=pytest.mark.slow),  # the server reboots mid-deploy
])
def test_a_broken_deploy_converges_on_a_plain_rerun(server, fault, at, note):
    s, root = server
    if on(s, "readlink /srv/hello-world/current || true").strip() == "":
        # run alone (make test-slow): a site must be live before a deploy over it is broken
        fab("-H", s.name, "deploy", env={"FABRIC_APP_SOURCE": str(make_app(root, "v-first"))},
            check=True)
    name = f"v-{fault}"
    app = make_app(root, name, note and name)
    out = run_case(s, f"deploy ({note or 'code only'})", ["deploy"], fault, at,
                   {"FABRIC_APP_SOURCE": str(app)})
    assert out.injected and out.ok, out.problems
    assert out.reruns == 1 and out.failed == 0 and out.requests > 100
    assert http_get(s)[2] == name


SMALL = "/srv/small"  # a 256 MB filesystem of its own for a second app


def test_a_release_that_does_not_fit_fails_before_switching_and_status_warns(server):
    s, root = server
    on(s, f"mkdir -p {SMALL} && mount -t tmpfs -o size=256m,mode=755 tmpfs {SMALL}")
    env = {"FABRIC_APP_NAME": "small", "FABRIC_APP_DIR": f"{SMALL}/app",
           "FABRIC_APP_SERVER_NAME": "small.test",
           "FABRIC_APP_DEFAULT_SERVER": "0"}
    try:
        first = make_app(root, "small-1")
        fab("-H", s.name, "deploy", env={**env, "FABRIC_APP_SOURCE": str(first)}, check=True)
        live = on(s, f"readlink {SMALL}/app/current").strip()
        venv_kb = int(on(s, f"cat {SMALL}/app/venvs/*/.fab-complete").split()[0])
        free_kb = int(on(s, f"df -Pk {SMALL} | awk 'NR==2 {{print $4}}'"))
        # leave room for new code, not for a second virtualenv of the same size
        ballast = free_kb - venv_kb // 2 - 33 * 1024
        on(s, f"fallocate -l {ballast}k {SMALL}/ballast")
        new_reqs = make_app(root, "small-2", "a new virtualenv")
        proc = fab("-H", s.name, "deploy", env={**env, "FABRIC_APP_SOURCE": str(new_reqs)})
        assert proc.returncode == 1
        assert "app         failed   not enough disk space for a new release: " in proc.stdout
        assert "free some space" in proc.stdout and "Traceback" not in proc.stderr
        # the build runs out of space after all: its partial release goes, the live one stays
        code_only = make_app(root, "small-3")
        (code_only / "build.sh").write_text("head -c 60000000 /dev/zero > blob\n")
        proc = fab("-H", s.name, "deploy", env={**env, "FABRIC_APP_SOURCE": str(code_only),
                                                "FABRIC_APP_BUILD_COMMAND": "sh build.sh"})
        assert proc.returncode == 1 and "No space left on device" in proc.stdout
        assert on(s, f"ls {SMALL}/app/releases").split() == [live.rpartition("/")[2]]
        assert on(s, f"readlink {SMALL}/app/current").strip() == live
        site = subprocess.run(["curl", "-sS", "-m", "5", "-H", "Host: small.test",
                               f"http://{s.address}/"], capture_output=True, text=True)
        assert site.stdout == "small-1"
        assert fab("-H", s.name, "status", env=env).returncode == 0  # 48 MB of 256 free: fine
        free_kb = int(on(s, f"df -Pk {SMALL} | awk 'NR==2 {{print $4}}'"))
        on(s, f"fallocate -l {free_kb - 10 * 1024}k {SMALL}/ballast2")  # leave 10 MB (4%)
        status = fab("-H", s.name, "status", env=env)
        assert status.returncode == 1 and f"the disk of {SMALL}/app is low:" in status.stdout
        assert "a new release may not fit" in status.stdout
    finally:
        on(s, f"rm -f {SMALL}/ballast {SMALL}/ballast2", check=False)

"""`fab status` and `fab logs` against a provisioned server, including faults."""

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

import sandbox
from tests.conftest import FAB, PROJECT, boot, destroy, fab, http_get, on

BOOM = '''

@app.route("/boom")
def boom():
    return 1 / 0
'''


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A provisioned server whose app also has a /boom route that raises."""
    source = tmp_path_factory.mktemp("app") / "hello_world"
    shutil.copytree(PROJECT / "hello_world", source)
    (source / "app.py").write_text((source / "app.py").read_text() + BOOM)
    env = {"FABRIC_APP_SOURCE": str(source)}
    s = boot()
    try:
        fab("-H", s.name, "provision", env=env, check=True)
        yield s, env
    finally:
        destroy(s)


def status(server, env, *args):
    return fab("-H", server.name, "status", *args, env=env)


def wait_healthy(server, env, timeout=30):
    """Poll `fab status` (bounded) until it exits 0; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if status(server, env).returncode == 0:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"not healthy after {timeout}s:\n{status(server, env).stdout}")


def test_status_is_healthy_and_json_has_the_same_facts(served):
    s, env = served
    table = status(s, env)
    assert table.returncode == 0, table.stdout
    row = table.stdout.splitlines()[1].split()
    release = on(s, "readlink /srv/hello-world/current").strip().rpartition("/")[2]
    assert row[:2] == [s.name, "RUNNING"] and row[4] == "4/4" and release in row
    data = json.loads(status(s, env, "--json").stdout)[0]
    assert data["healthy"] and data["release"] == release and data["workers"] == 4
    assert data["app_pid"] == int(row[2]) and data["http_status"] == 200
    assert data["ufw_allowed"] == ["22/tcp", "80/tcp"]
    assert data["enabled"] == {"nginx": True, "supervisor": True, "ufw": True}


def test_killed_master_is_reported_then_supervisor_brings_it_back(served):
    s, env = served
    pid = on(s, "supervisorctl pid hello-world").strip()
    on(s, f"kill -9 {pid}")
    down = status(s, env)
    assert down.returncode != 0
    recovery = wait_healthy(s, env)
    assert on(s, "supervisorctl pid hello-world").strip() != pid
    print(f"\nrecovery after kill -9 of the gunicorn master: {recovery:.1f}s")
    assert http_get(s)[2] == "Hello world"


def test_stopped_nginx_is_named_and_exit_is_non_zero(served):
    s, env = served
    on(s, "systemctl stop nginx")
    try:
        proc = status(s, env)
        assert proc.returncode == 1
        assert f"{s.name}: nginx is not active" in proc.stdout
        assert "inactive!" in proc.stdout  # the unhealthy cell stands out
    finally:
        on(s, "systemctl start nginx")
    wait_healthy(s, env, timeout=10)


def test_a_request_shows_in_the_access_log(served):
    s, env = served
    http_get(s, "/?marker=access-test")
    proc = fab("-H", s.name, "logs", "--component", "access", "-n", "5", env=env, check=True)
    assert "GET /?marker=access-test HTTP/1.1" in proc.stdout


def test_an_exception_in_the_app_shows_in_the_app_log(served):
    s, env = served
    with pytest.raises(Exception, match="500"):
        http_get(s, "/boom")
    proc = fab("-H", s.name, "logs", env=env, check=True)
    assert f"[{s.name}] ZeroDivisionError: division by zero" in proc.stdout
    grep = fab("-H", s.name, "logs", "--grep", "ZeroDivision", "-n", "1", env=env, check=True)
    assert grep.stdout.strip().splitlines() == [f"[{s.name}] ZeroDivisionError: division by zero"]


def test_logs_before_anything_was_logged_says_so(server):
    proc = fab("-H", server.name, "logs", "--component", "error", check=True)
    assert "does not exist yet" in proc.stdout


def test_follow_shows_a_new_request_within_two_seconds_and_stops_cleanly(served):
    s, env = served
    http_get(s, "/?marker=before-follow")
    argv = [FAB, "-S", str(sandbox.STATE / "ssh_config"), "-H", s.name, "logs",
            "--component", "access", "-n", "1", "--follow"]
    # Ctrl-C at a terminal: SIGINT as the default, even when this test runs where it is
    # ignored (a job a non-interactive shell put in the background passes that on).
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env, "PYTHONFAULTHANDLER": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        assert lines.get(timeout=15).startswith(f"[{s.name}] ")  # the last old line
        http_get(s, "/?marker=follow-test")
        assert "marker=follow-test" in lines.get(timeout=2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # where fab hangs: its threads' stacks
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=10)
            raise AssertionError("fab logs --follow did not stop on Ctrl-C:\n"
                                 + proc.stderr.read()) from None
    err = proc.stderr.read()
    assert proc.returncode == 0 and "Traceback" not in err
    assert on(s, "pgrep -c tail || true").strip() == "0"  # nothing left running remotely

"""Three servers at once: provision in parallel (as root, as a sudo user with and without a
password), status and logs cover all three, and a serial deploy stops at a bad host.

The module's tests share the three servers and run in order."""

import json
import shutil

import pytest

from tests.conftest import PROJECT, boot, destroy, fab, http_get, on, recap

# make test keeps several hosts in one run through the balancer (test_balancer.py)
pytestmark = pytest.mark.slow

SUDO_PW = "s3cret pw"
ENV = {"FABRIC_SUDO_PASSWORD": SUDO_PW}


@pytest.fixture(scope="module")
def trio():
    servers = []
    try:
        servers += [boot(), boot(sudo_password=SUDO_PW), boot()]
        hosts = f"tom@{servers[0].name},tom@{servers[1].name},root@{servers[2].name}"
        run = fab("-H", hosts, "provision", env=ENV, check=True)
        yield servers, hosts, run
    finally:
        for s in servers:
            destroy(s)


def test_provision_runs_all_three_in_parallel_with_one_recap(trio):
    servers, _, run = trio
    for s in servers:
        assert http_get(s)[2] == "Hello world"
        assert recap(run, s.name) == "ok=0 changed=6 failed=0"
    assert SUDO_PW not in run.stdout + run.stderr


def test_status_has_a_healthy_row_per_host(trio):
    servers, hosts, _ = trio
    proc = fab("-H", hosts, "status", env=ENV, check=True)
    rows = [line.split() for line in proc.stdout.splitlines()[1:1 + len(servers)]]
    assert sorted(r[0] for r in rows) == sorted(s.name for s in servers)
    assert all(r[1] == "RUNNING" and r[4] == "4/4" for r in rows)
    data = json.loads(fab("-H", hosts, "status", "--json", env=ENV, check=True).stdout)
    assert [d["healthy"] for d in data] == [True, True, True]


def test_logs_come_from_every_host_prefixed(trio):
    servers, hosts, _ = trio
    for s in servers:
        http_get(s, "/")
    proc = fab("-H", hosts, "logs", "--component", "access", "-n", "5", env=ENV, check=True)
    for s in servers:
        assert any(line.startswith(f"[{s.name}] ") and '"GET / HTTP/1.1" 200' in line
                   for line in proc.stdout.splitlines())


# The new version is broken only where /etc/broken-here exists (the second server).
V2 = """

@app.route("/", endpoint="v2")
def v2():
    import os
    if os.path.exists("/etc/broken-here"):
        return "broken", 500
    return "Hello v2"
"""


def test_serial_deploy_stops_at_the_first_failure_and_leaves_the_rest(trio, tmp_path):
    (first, second, third), hosts, _ = trio
    on(second, "touch /etc/broken-here")
    app = tmp_path / "v2"
    shutil.copytree(PROJECT / "hello_world", app)
    code = (app / "app.py").read_text().replace('@app.route("/")', '@app.route("/v1")')
    (app / "app.py").write_text(code + V2)
    proc = fab("-H", hosts, "deploy", "--serial", "1",
               env={**ENV, "FABRIC_APP_SOURCE": str(app), "FABRIC_APP_HEALTH_TIMEOUT": "5"})
    assert proc.returncode == 1
    assert recap(proc, first.name) == "ok=5 changed=1 failed=0"
    assert recap(proc, second.name) == "ok=1 changed=0 failed=1"
    assert recap(proc, third.name).startswith("skipped")
    assert http_get(first)[2] == "Hello v2"
    assert http_get(second)[2] == "Hello world"
    assert http_get(third)[2] == "Hello world"
    assert f"[{third.name}]" not in proc.stdout  # never even connected to

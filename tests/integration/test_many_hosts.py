"""Three servers at once: provision in parallel (as root, as a sudo user with and without a
password), then status and logs cover all three, each line prefixed by its host."""

import json

import pytest

from tests.conftest import boot, destroy, fab, http_get, recap

SUDO_PW = "s3cret pw"
ENV = {"FABRIC_SUDO_PASSWORD": SUDO_PW, "FABRIC_APP_USER": "tom"}


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
        assert recap(run, s.name) == "ok=0 changed=5 failed=0"
    assert SUDO_PW not in run.stdout + run.stderr


def test_status_has_a_healthy_row_per_host(trio):
    servers, hosts, _ = trio
    proc = fab("-H", hosts, "status", env=ENV, check=True)
    rows = [line.split() for line in proc.stdout.splitlines()[1:] if line.strip()]
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

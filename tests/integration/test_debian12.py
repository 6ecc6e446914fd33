"""The end-to-end core on Debian 12 (bookworm), still widely run: the rest of the suite runs
on the sandbox's default, Debian 13 (trixie)."""

import time

import pytest

import sandbox
from tests.conftest import booted, fab, http_get, on, recap
from tests.integration.test_deploy import make_app
from tests.load import Load


@pytest.fixture(scope="module")
def bookworm(tmp_path_factory):
    with booted(suite="bookworm") as s:
        yield s, tmp_path_factory.mktemp("apps")


def under_load(s, *args, env=None):
    with Load(s.address, clients=20, max_seconds=180) as load:
        time.sleep(0.5)
        proc = fab("-H", s.name, *args, env=env)
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return load


def test_provision_serves_and_a_rerun_changes_nothing(bookworm):
    s, _ = bookworm
    assert on(s, ". /etc/os-release; echo $VERSION_ID $VERSION_CODENAME").split() == \
        ["12", "bookworm"]
    first = fab("-H", s.name, "provision", check=True)
    assert "failed=0" in recap(first, s.name)
    assert http_get(s)[2] == "Hello world"
    assert recap(fab("-H", s.name, "provision", check=True), s.name).endswith("changed=0 failed=0")


def test_deploy_and_rollback_under_load_fail_no_request(bookworm):
    s, apps = bookworm
    load = under_load(s, "deploy", env={"FABRIC_APP_SOURCE": str(make_app(apps, "Hello two"))})
    assert load.failures({"Hello world", "Hello two"}) == {}
    assert load.results[(200, "Hello two")] > 0 and load.total > 100
    assert http_get(s)[2] == "Hello two"
    load = under_load(s, "rollback")
    assert load.failures({"Hello world", "Hello two"}) == {}
    assert load.results[(200, "Hello world")] > 0 and load.total > 100
    assert http_get(s)[2] == "Hello world"


def test_status_is_healthy_before_and_after_a_reboot(bookworm):
    s, _ = bookworm
    assert fab("-H", s.name, "status").returncode == 0
    sandbox.reboot_server(s.name)
    deadline = time.monotonic() + 30
    while fab("-H", s.name, "status").returncode != 0:  # bounded: supervisor starts after boot
        assert time.monotonic() < deadline, fab("-H", s.name, "status").stdout
        time.sleep(1)
    assert http_get(s)[2] == "Hello world"

"""Roles in make test: a balancer in front of one web host (hello_world). One provision
sets up both (the web host first); the site answers through the balancer only; a converged
re-run under load through the balancer fails no request (a lone web host is never drained)
and is one round trip per host. The five-host fleet (database, two web, worker, balancer)
is tests/integration/test_balancer.py, in make test-slow."""

import socket
import time

import pytest

from tests.conftest import PROJECT, boot, destroy, fab, http_get, on
from tests.integration.test_balancer import reachable
from tests.load import Load


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    servers = []
    try:
        servers += [boot() for _ in range(2)]
        web, lb = servers
        settings = tmp_path_factory.mktemp("roles") / "fabric.yaml"
        settings.write_text(f"app:\n  source: {PROJECT / 'hello_world'}\n  roles:\n"
                            f"    web: [{web.name}]\n    lb: [{lb.name}]\n")
        yield web, lb, ["-f", str(settings)]
    finally:
        for s in servers:
            destroy(s)


def test_one_provision_sets_up_the_web_host_then_the_balancer(pair):
    web, lb, settings = pair
    out = fab(*settings, "provision", check=True).stdout  # no -H: every host of app.roles
    assert out.index(f"[{web.name}] app ") < out.index(f"[{lb.name}] nginx ")
    assert f"[{lb.name}] app " not in out
    assert http_get(lb)[2] == "Hello world"


def test_the_web_host_answers_http_to_the_balancer_only(pair):
    web, lb, _ = pair
    with pytest.raises(OSError):
        socket.create_connection((web.address, 80), timeout=3).close()
    assert reachable(lb, web.address, 80)
    assert "gunicorn" not in on(lb, "ps -eo args")


def test_a_converged_run_through_the_balancer_fails_no_request(pair):
    web, lb, settings = pair
    with Load(lb.address, clients=10, max_seconds=60) as load:
        time.sleep(0.3)
        proc = fab(*settings, "provision", check=True)
        time.sleep(0.3)
    assert load.failures({"Hello world"}) == {} and load.total > 50
    assert "balancer" not in proc.stdout  # the lone web host stayed in
    assert proc.stdout.count("(1 SSH round trip,") == 2

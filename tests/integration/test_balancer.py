"""Two web hosts behind a balancer (app.roles): provisioned in one run, deployed one at a
time out of the balancer under load with no failed request, a web host lost under load
without the site noticing, HTTP on the web hosts open to the balancer only.

The module's tests share the three servers and run in order."""

import json
import socket
import time

import pytest

import sandbox
from tests.conftest import boot, destroy, fab, http_get, on
from tests.integration.test_deploy import make_app
from tests.load import Load


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    servers = []
    try:
        servers += [boot(), boot(), boot()]
        web1, web2, lb = servers
        folder = tmp_path_factory.mktemp("fleet")
        settings = folder / "roles.yaml"
        settings.write_text(f"app:\n  roles:\n    web: [{web1.name}, {web2.name}]\n"
                            f"    lb: [{lb.name}]\n")
        yield servers, ["-f", str(settings)], folder
    finally:
        for s in servers:
            destroy(s)


def test_one_provision_sets_up_the_web_hosts_then_the_balancer(fleet):
    (web1, web2, lb), settings, _ = fleet
    proc = fab(*settings, "provision", check=True)  # no -H: every host of app.roles
    out = proc.stdout
    assert out.index(f"[{web1.name}] app ") < out.index(f"[{lb.name}] nginx ")
    assert f"[{lb.name}] nginx       changed  wrote /etc/nginx/sites-available/hello-world " \
           "(balancing 2 web hosts)" in out
    assert f"[{lb.name}] app " not in out and f"[{lb.name}] supervisor " not in out
    assert http_get(lb)[2] == "Hello world"
    for _ in range(6):  # round robin: both web hosts answer through the balancer
        http_get(lb)
    for web in (web1, web2):  # through the balancer, logged with the client's own address
        assert sandbox.GATEWAY in on(web, "cat /var/log/nginx/hello-world.access.log")
    assert on(lb, "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' python3-venv "
                  "supervisor 2>/dev/null | grep '^ii'; true").strip() == ""
    rerun = fab(*settings, "provision", check=True)
    assert rerun.stdout.count("changed=0 failed=0") == 3
    status = fab(*settings, "status", check=True).stdout.splitlines()
    assert [row.split()[:2] for row in status[1:4]] == \
        [[web1.name, "RUNNING"], [web2.name, "RUNNING"], [lb.name, "(lb)"]]


def test_http_on_a_web_host_is_open_to_the_balancer_only(fleet):
    (web1, _, lb), _, _ = fleet
    with pytest.raises(OSError):
        socket.create_connection((web1.address, 80), timeout=3).close()
    assert on(lb, f"env -u http_proxy python3 -c \"import urllib.request; print(urllib.request"
                  f".urlopen('http://{web1.address}/', timeout=5).read().decode())\"").strip() \
        == "Hello world"


def test_a_rolling_deploy_takes_each_web_host_out_and_fails_no_request(fleet):
    (web1, web2, lb), settings, folder = fleet
    app = make_app(folder, "Hello rolling")
    with Load(lb.address, clients=20, max_seconds=240) as load:
        time.sleep(0.5)
        proc = fab(*settings, "deploy", env={"FABRIC_APP_SOURCE": str(app)})
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures({"Hello world", "Hello rolling"}) == {}
    assert load.results[(200, "Hello rolling")] > 0 and load.total > 100
    out = proc.stdout
    for web in (web1, web2):
        took = out.index(f"[{lb.name}] balancer    changed  took {web.name} out")
        assert took < out.index(f"[{web.name}] app ") < \
            out.index(f"[{lb.name}] balancer    changed  put {web.name} back")
    assert out.index(f"put {web1.name} back") < out.index(f"took {web2.name} out")
    assert [http_get(lb)[2] for _ in range(4)] == ["Hello rolling"] * 4
    assert "down" not in on(lb, "grep 'server ' /etc/nginx/sites-available/hello-world")
    history = json.loads(fab(*settings, "history", "--json", check=True).stdout)
    assert {e["host"] for e in history if e["action"] == "deploy"} == \
        {web1.name, web2.name, lb.name}


def test_the_balancer_keeps_answering_when_a_web_host_dies(fleet):
    (web1, web2, lb), _, _ = fleet
    with Load(lb.address, clients=20, max_seconds=60) as load:
        time.sleep(1)
        destroy(web2)
        time.sleep(8)
    assert load.failures({"Hello rolling"}) == {}
    assert load.total > 100 and http_get(lb)[2] == "Hello rolling"

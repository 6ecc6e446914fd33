"""Maintenance mode on a real server: every request gets a 503 with Retry-After and the
page, nothing reloads, fab's own probe still reaches the app, and off brings it back."""

import urllib.error
import urllib.request

import pytest

from tests.conftest import fab, http_get, on


@pytest.fixture(scope="module")
def served(module_server):
    s, _ = module_server
    fab("-H", s.name, "provision", check=True)
    return s


def answer(s, path="/"):
    """(status, Retry-After, body) of GET PATH through nginx."""
    try:
        status, headers, body = http_get(s, path)
        return status, headers.get("Retry-After"), body
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Retry-After"), e.read().decode()


def test_maintenance_answers_503_with_retry_after_but_to_fabs_probe(served):
    s = served
    pid = on(s, "cat /run/nginx.pid").strip()
    proc = fab("-H", s.name, "maintenance", "on", "--message", "Back <soon> & well")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in ("/", "/static/missing.css", "/anything?x=1"):
        status, retry, body = answer(s, path)
        assert (status, retry) == (503, "120"), path
        assert "Back &lt;soon&gt; &amp; well" in body
    assert on(s, "cat /run/nginx.pid").strip() == pid  # nothing reloaded
    status = fab("-H", s.name, "status")
    assert status.returncode == 0, status.stdout  # the probe from the server still passes
    assert f"{s.name}: note: maintenance is on: visitors get the maintenance page (503); " \
        "fab maintenance off ends it" in status.stdout
    assert on(s, "stat -c '%U %a' /etc/nginx/fab-maintenance/hello-world.html").strip() == \
        "root 644"


def test_the_apps_own_page_is_read_as_the_app_and_off_brings_the_app_back(served):
    s = served
    on(s, "ln -sf /etc/shadow /srv/hello-world/current/maintenance.html", check=False)
    proc = fab("-H", s.name, "maintenance", "on")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status, _, body = answer(s)
    assert status == 503 and "root:" not in body and "down for maintenance" in body
    proc = fab("-H", s.name, "maintenance", "off")
    assert proc.returncode == 0 and "maintenance off" in proc.stdout, proc.stdout
    assert answer(s)[0] == 200
    assert "maintenance is on" not in fab("-H", s.name, "status").stdout
    again = fab("-H", s.name, "maintenance", "off")
    assert "maintenance is off" in again.stdout
    refused = fab("-H", s.name, "maintenance", "maybe")
    assert refused.returncode == 2 and "neither on nor off" in refused.stderr


def test_switching_maintenance_on_and_off_under_load_answers_only_200_or_503(served):
    """A request that found maintenance on still finds its page when it goes off: the
    switch and the page are two files, and off removes only the switch."""
    from invoke import Config

    from tasks.config import load
    from tasks.site import maintenance_off_script, maintenance_on_script
    from tests.load import Load

    s, settings = served, load(Config(overrides={"app": {}}))
    toggles = f"for i in $(seq 300); do\n{maintenance_on_script(settings)}\n" \
        f"{maintenance_off_script(settings)}\ndone"
    with Load(s.address, clients=10, max_seconds=60) as load:
        on(s, toggles)
    assert {status for status, _ in load.results} == {200, 503}, load.results
    assert answer(s)[0] == 200


def test_a_release_command_that_must_not_meet_traffic_runs_in_maintenance(served, tmp_path):
    import shutil

    from tests.conftest import PROJECT
    from tests.load import Load

    s = served
    app = tmp_path / "app"
    shutil.copytree(PROJECT / "hello_world", app)
    (app / "app.py").write_text((app / "app.py").read_text().replace("Hello world", "Hello v2"))
    env = {"FABRIC_APP_SOURCE": str(app), "FABRIC_APP_RELEASE_COMMAND": "sleep 4",
           "FABRIC_APP_MAINTENANCE_DURING_RELEASE": "yes"}
    with Load(s.address, clients=10, max_seconds=120) as load:
        proc = fab("-H", s.name, "deploy", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ran `sleep 4` in maintenance mode" in proc.stdout
    assert {status for status, _ in load.results} == {200, 503}, load.results  # never a 502
    assert answer(s)[:1] == (200,) and http_get(s)[2] == "Hello v2"
    assert on(s, "ls /etc/nginx/fab-maintenance/").split() == ["hello-world.html"]  # off

"""A server deployed by the previous version moves to the app's own account on the next run.

Until this version the app ran as the SSH user (tom, who has sudo) from
/home/tom/hello-world. The previous version of this very repository deploys it; then
this version's `provision` moves it, under load, keeping its logs.
"""

import subprocess

import pytest

import sandbox
from tests.conftest import FAB, PROJECT, fab, http_get, on, recap
from tests.load import Load

PREVIOUS = "33fb154"  # the last commit whose app ran as the SSH user


@pytest.mark.slow
def test_a_deployment_by_the_previous_version_moves_without_downtime(server, tmp_path):
    old = tmp_path / "previous"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(PROJECT), "archive", PREVIOUS],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    first = subprocess.run([FAB, "-S", str(sandbox.STATE / "ssh_config"), "-H", server.name,
                            "deploy"], cwd=old, capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stdout + first.stderr
    assert on(server, "supervisorctl pid hello-world | xargs ps -o user= -p").strip() == "tom"
    on(server, "echo 'logged before the move' >> /var/log/hello-world/app.log")

    with Load(server.address, clients=10, max_seconds=120) as load:
        proc = fab("-H", server.name, "provision")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.failures({"Hello world"}) == {} and load.total > 0
    assert ("moved the app from user tom and /home/tom/hello-world to user hello-world and "
            "/srv/hello-world") in proc.stdout
    assert on(server, "supervisorctl pid hello-world | xargs ps -o user= -p").strip() == \
        "hello-world"
    assert http_get(server)[2] == "Hello world"
    assert "logged before the move" in on(server, "cat /var/log/hello-world/app.log")
    assert on(server, "stat -c %G /var/log/hello-world").strip() == "hello-world"
    assert on(server, "ls /home/tom/hello-world/releases").strip()  # left for the user
    assert recap(fab("-H", server.name, "provision"), server.name) == "ok=5 changed=0 failed=0"

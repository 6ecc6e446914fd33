"""app.schedule on a real server: a systemd timer per job, run as the app in the live
release with its shared state; a deploy does not cut a running job off (it finishes on the
release it started on); a failed run turns `fab status` unhealthy; `fab logs -c JOB`."""

import json
import shutil
import time

from tests.conftest import PROJECT, fab, on

UNIT = "fab:hello-world:tick"


def settings(app, command):
    return {"FABRIC_APP_SOURCE": str(app), "FABRIC_APP_SHARED_PATHS": "data/",
            "FABRIC_APP_SCHEDULE": json.dumps({"tick": {"when": "hourly", "command": command}})}


def ticks(s):
    return on(s, "cat /srv/hello-world/shared/data/ticks 2>/dev/null || true").split()


def test_a_job_runs_as_the_app_in_its_release_and_a_deploy_lets_it_finish(module_server):
    s, apps = module_server
    app = apps / "app"
    shutil.copytree(PROJECT / "hello_world", app)
    env = settings(app, 'sleep 8; echo "$(whoami):$(basename "$(pwd -P)")" >> data/ticks')
    proc = fab("-H", s.name, "provision", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "schedule" in proc.stdout
    assert on(s, f"systemctl is-enabled {UNIT}.timer; systemctl is-active {UNIT}.timer").split() \
        == ["enabled", "active"]
    first = on(s, "readlink /srv/hello-world/current").strip().rsplit("/", 1)[-1]
    on(s, f"systemctl start --no-block {UNIT}.service")
    time.sleep(2)  # the job is running, in the first release
    (app / "app.py").write_text((app / "app.py").read_text().replace("Hello world", "Hello two"))
    proc = fab("-H", s.name, "deploy", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = on(s, "readlink /srv/hello-world/current").strip().rsplit("/", 1)[-1]
    assert second != first
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not ticks(s):
        time.sleep(1)
    assert ticks(s) == [f"hello-world:{first}"]  # finished where it started, as the app
    on(s, f"systemctl start {UNIT}.service", timeout=60)  # the next run: the new release
    assert ticks(s)[-1] == f"hello-world:{second}"
    status = fab("-H", s.name, "status", "--json", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "tick ok" in status.stdout


def test_a_failed_run_turns_status_unhealthy_and_its_output_is_in_logs(module_server):
    s, apps = module_server
    env = settings(apps / "app", "echo about to fail; exit 3")
    fab("-H", s.name, "deploy", env=env, check=True)
    on(s, f"systemctl start {UNIT}.service || true", timeout=60)
    status = fab("-H", s.name, "status", env=env)
    assert status.returncode == 1 and "job tick's last run failed" in status.stdout + \
        status.stderr, status.stdout + status.stderr
    logs = fab("-H", s.name, "logs", "-c", "tick", env=env)
    assert "about to fail" in logs.stdout, logs.stdout + logs.stderr
    gone = fab("-H", s.name, "deploy", env={**env, "FABRIC_APP_SCHEDULE": "{}"})
    assert gone.returncode == 0 and f"removed {UNIT}.service, {UNIT}.timer" in gone.stdout, \
        gone.stdout
    assert on(s, f"ls /etc/systemd/system | grep -c {UNIT} || true").strip() == "0"

"""app.schedule's planner: units rendered for the jobs' host only, quoted for systemd,
removed when a job goes, and a last run that failed shown as a problem."""

import dataclasses

from invoke import Config

from tasks.config import load
from tasks.facts import Facts
from tasks.steps import schedule

JOBS = {"digest": {"when": "*-*-* 06:00", "command": 'flask digest --since "1 day" 100%'}}
S = load(Config(overrides={"app": {"schedule": JOBS}}))


def test_a_job_is_a_timer_and_a_service_running_as_the_app_in_the_live_release():
    files = schedule.unit_files(S)
    service = files["/etc/systemd/system/fab:hello-world:digest.service"]
    timer = files["/etc/systemd/system/fab:hello-world:digest.timer"]
    assert "User=hello-world\n" in service and "WorkingDirectory=/srv/hello-world/current\n" \
        in service and "Type=oneshot" in service
    assert 'sh -c "flask digest --since \\"1 day\\" 100%%"' in service  # systemd's quoting
    assert "OnCalendar=*-*-* 06:00\n" in timer and "Persistent=true" in timer


def test_only_the_jobs_host_gets_them_and_a_job_that_goes_is_removed():
    elsewhere = dataclasses.replace(S, runs_jobs=False)
    assert schedule.unit_files(elsewhere) == {}
    facts = Facts(job_units={"fab:hello-world:digest.timer", "fab:hello-world:digest.service",
                             "fab:other:digest.timer"})
    plan = schedule.plan(elsewhere, facts)
    [remove] = plan.changes
    assert remove.said == "removed fab:hello-world:digest.service, fab:hello-world:digest.timer"
    assert "fab:other" not in remove.script  # another app's jobs are not ours


def test_new_units_are_checked_by_systemd_then_their_timers_started():
    plan = schedule.plan(S, Facts())
    check, *uploads, start = plan.changes
    assert "systemd-analyze calendar '*-*-* 06:00'" in check.script
    assert len(uploads) == 2 and start.said == "started fab:hello-world:digest.timer"


def test_a_failed_last_run_is_a_problem_and_a_job_not_run_yet_is_not():
    assert schedule.read_jobs(S, ["digest success 0 Thu_2026-12-03_06:00:01_UTC"]) == \
        ("digest ok", "")
    assert schedule.read_jobs(S, ["digest success 0 "]) == ("digest not yet", "")
    assert schedule.read_jobs(S, ["digest exit-code 3 Thu_2026-12-03_06:00:01_UTC"]) == \
        ("digest failed", "job digest's last run failed (exit-code, exit 3)")


def test_several_hosts_without_roles_are_refused_before_any_connection():
    import json
    import os
    import subprocess
    from pathlib import Path

    project = Path(__file__).resolve().parents[2]
    env = {**os.environ, "FABRIC_APP_SCHEDULE": json.dumps(JOBS)}
    for task in ("deploy", "provision"):
        proc = subprocess.run([str(project / ".venv/bin/fab"), "-H", "nosuch1,nosuch2", task],
                              cwd=project, text=True, capture_output=True, timeout=60,
                              stdin=subprocess.DEVNULL, env=env)
        assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
        assert proc.stderr.strip() == (
            "app.schedule's jobs run on one host, and -H names several: list them in "
            "app.roles (the first worker host runs the jobs, else the first web host)")

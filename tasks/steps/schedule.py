"""Step: app.schedule's jobs as systemd timers, on one host (the first worker host, else the
first web host).

A timer and a oneshot service per job, rather than crontab lines: systemd never starts a
job that is still running (no two runs at once), runs a missed one once after downtime
(`Persistent=true`), keeps each run's output in the journal (`fab logs -c JOB`) and its
result for `fab status`. The service runs as the app runs (its venv, its environment
through gunicorn's config file, cwd the release), in the release live when it starts: a
deploy never cuts a running job off, and the next run uses the new release.
"""

import re

from tasks.declared import Column, Journal, Needs
from tasks.plan import Command, Plan, Step, upload
from tasks.release_phase import WITH_APP_ENV
from tasks.shell import q
from tasks.templates import render
from tasks.units import UNIT_DIR, calendar_check, timers_started, units_removed


def systemd_word(text):
    """TEXT as one double-quoted word of a unit file's ExecStart (C escapes; `$` and `%`
    literal)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("$", "$$").replace("%", "%%") + '"'


def jobs(s):
    """The jobs this host runs: {job: spec}."""
    return dict(s.schedule) if s.runs_jobs and s.runs_app else {}


def unit_files(s):
    """{path: content} of every job's service and timer on this host."""
    out = {}
    for job, spec in sorted(jobs(s).items()):
        unit = s.job_unit(job)
        values = dict(name=s.name, job=job, unit=unit, user=s.user, current=s.current,
                      gunicorn_conf=s.gunicorn_conf, with_app_env=systemd_word(WITH_APP_ENV),
                      command=systemd_word(spec["command"]), when=spec["when"])
        out[f"{UNIT_DIR}/{unit}.service"] = render("job.service.j2", **values)
        out[f"{UNIT_DIR}/{unit}.timer"] = render("job.timer.j2", **values)
    return out


def needs(s):
    return Needs(files=tuple(unit_files(s)))


def logs(s):
    return {job: Journal(f"{s.job_unit(job)}.service") for job in jobs(s)}


def job_states(s):
    """One line per job: `JOB RESULT EXIT-STATUS WHEN` of its last run (systemd's words)."""
    return "; ".join(
        f"printf '%s %s %s %s\\n' {q(job)} "
        f"$(systemctl show -p Result --value {q(s.job_unit(job))}.service) "
        f"$(systemctl show -p ExecMainStatus --value {q(s.job_unit(job))}.service) "
        f"\"$(systemctl show -p ExecMainExitTimestamp --value {q(s.job_unit(job))}.service "
        "| tr ' ' _)\"" for job in jobs(s)) or "true"


def read_jobs(s, lines):
    """(cell, problem) of the jobs' last runs: a job whose last run failed is a problem."""
    cells, failed = [], []
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[0] not in s.schedule:
            continue
        job, result, status = parts[:3]
        ran = len(parts) > 3 and parts[3] not in ("", "n/a")
        state = "ok" if result == "success" and ran else "failed" if ran else "not yet"
        cells.append(f"{job} {state}")
        if state == "failed":
            failed.append(f"job {job}'s last run failed ({result}, exit {status})")
    return " ".join(cells) or "-", "; ".join(failed)


COLUMN = Column("jobs", job_states, read_jobs)


def plan(s, facts):
    """Each job's unit files written and its timer on; jobs no longer listed (or moved to
    another host) stopped and removed. A calendar systemd does not read stops the step."""
    wanted = unit_files(s)
    changes = [change for path, content in wanted.items()
               for change in upload(facts, f"wrote {path.rsplit('/', 1)[1]}", path, content)]
    ours = re.compile(re.escape(s.job_unit("")) + r"[a-z][a-z0-9_-]*\.(service|timer)")
    stale = sorted(u for u in facts.job_units
                   if ours.fullmatch(u) and f"{UNIT_DIR}/{u}" not in wanted)
    if stale:
        changes.append(Command(f"removed {', '.join(stale)}", "\n".join(units_removed(
            [u for u in stale if u.endswith(".timer")], [f"{UNIT_DIR}/{u}" for u in stale]))))
    if changes and wanted:
        timers = [f"{s.job_unit(job)}.timer" for job in sorted(jobs(s))]
        check = "\n".join(calendar_check(spec["when"], f"app.schedule.{job}.when")
                           for job, spec in sorted(jobs(s).items()))
        changes.insert(0, Command("", check))
        changes.append(Command(f"started {', '.join(timers)}", timers_started(timers)))
    return Plan(changes, ok=f"{len(jobs(s))} job timer(s) in place" if jobs(s) else "no jobs")


STEP = Step("schedule", lambda h: plan(h.settings, h.facts),
            "Run app.schedule's jobs by systemd timers, on one host, in the live release.",
            applies=lambda h: bool(h.settings.schedule or h.facts.job_units))
